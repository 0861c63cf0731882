"""``python train_pipeline.py DATA ...`` from a checkout: the same run as ``mammo train DATA ...``.

The code is the :mod:`mammo.training` package (command line: ``mammo/training/cli.py``).
"""

import sys

from mammo.cli import run

if __name__ == "__main__":
    sys.exit(run("train", sys.argv[1:]))
