"""The ``mammo`` command: one entry point for training, serving and prediction.

Each sub-command is a thin dispatcher to the module that owns it, so
``mammo train --help``, ``python -m mammo.train_pipeline --help`` and
``python train_pipeline.py --help`` (in a checkout) agree.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "train": ("mammo.training.cli", "compare texture / CNN / combined features x XGBoost / SVM with grouped CV, write a report and the best model"),
    "serve": ("mammo.webapp.__main__", "serve the upload page and JSON API for a saved model (waitress)"),
    "predict": ("mammo.predict", "predict density and tumour for files, folders or globs into a CSV"),
    "evaluate": ("mammo.evaluate_cli", "score a saved model on another labelled data set, beside its cross-validated figures"),
    "inspect": ("mammo.inspection", "draw how the breast was found in each image (contact sheets + CSV), no model needed"),
    "audit": ("mammo.audit", "find near-duplicate images (augmented copies) and check a train/test split for leakage"),
    "cache": ("mammo.caches", "show what the on-disk caches hold and remove stale entries"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="mammo",
        description="Mammogram density (BI-RADS 1-4) and tumour (benign/malignant) classification.",
        epilog="Run 'mammo COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
    if argv[0] == "serve" and sys.platform.startswith("linux") and "MALLOC_ARENA_MAX" not in os.environ:
        # glibc gives each server thread its own malloc arena, which grows the
        # server's memory under concurrent load (docs/results.md); two arenas
        # keep it flat. Only read at process start, hence the re-exec.
        os.environ["MALLOC_ARENA_MAX"] = "2"
        os.execv(sys.executable, [sys.executable, "-m", "mammo.cli", *argv])
    # TensorFlow's C++ start-up lines are noise on a command line
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .storage import export_keras_home

    export_keras_home()  # before anything imports Keras, and inherited by worker processes
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
