"""The ``mammo`` command: one entry point for training, serving and prediction.

Each sub-command is a thin dispatcher to the module that owns it, so
``mammo train --help``, ``python -m mammo.train_pipeline --help`` and
``python train_pipeline.py --help`` (in a checkout) agree.

Failures a user can fix (:data:`EXPECTED_ERRORS`) are handled here, once for every
sub-command: one line ``mammo CMD: error: ...`` on stderr and exit status 2. Any other
exception is a bug and keeps its traceback (status 1). Bad arguments are argparse's:
the usage, one error line, status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator

COMMANDS = {
    "train": (
        "mammo.training.cli",
        "compare texture / CNN / combined features x XGBoost / SVM with grouped CV, write a report and the best model",
    ),
    "serve": ("mammo.webapp.__main__", "serve the upload page and JSON API for a saved model (waitress)"),
    "predict": ("mammo.predict", "predict density and tumour for files, folders or globs into a CSV"),
    "evaluate": (
        "mammo.evaluate_cli",
        "score a saved model on another labelled data set, beside its cross-validated figures",
    ),
    "recalibrate": (
        "mammo.recalibrate_cli",
        "refit a saved model's calibration, tumour threshold and density cut points on a new site's sample",
    ),
    "inspect": (
        "mammo.inspection",
        "draw how the breast was found in each image (contact sheets + CSV), no model needed",
    ),
    "audit": ("mammo.audit", "find near-duplicate images (augmented copies) and check a train/test split for leakage"),
    "cache": ("mammo.caches", "show what the on-disk caches hold and remove stale entries"),
}

#: The failures a user can fix, as (module, class), each documented where it is defined.
EXPECTED_ERRORS = (
    ("mammo.conventions", "InputError"),  # no images among the inputs, a CSV without the needed columns
    ("mammo.storage", "OutputDirError"),  # an output folder that cannot be created or written
    ("mammo.datasets", "DatasetError"),  # a data set folder or manifest that cannot be read
    ("mammo.training.folds", "TrainingDataError"),  # too few labelled images, classes or groups
    ("mammo.features.backbone", "WeightsUnavailableError"),  # ImageNet weights neither on disk nor downloadable
    ("mammo.classifiers.artifact", "ModelFileError"),  # model missing, unreadable, tampered, not a model
    ("mammo.webapp", "ModelLoadError"),  # the same, as the web app reports it
    ("mammo.evaluate", "EvaluationError"),  # labels that cannot be scored as asked (e.g. F/G/D vs BI-RADS)
    ("mammo.recalibrate", "RecalibrationError"),  # a sample with one class, or too few cases of one for the CV
)
#: Errors that name an image and wrap the cause: expected when the cause is the image's
#: fault (unreadable, not a mammogram, an OSError reading it) or itself expected.
WRAPPING_ERRORS = (("mammo.featcache", "FeatureComputationError"),)
IMAGE_ERRORS = (("mammo.features.io", "ImageReadError"), ("mammo.features.quality", "ImplausibleImageError"))


def _classes(names: tuple[tuple[str, str], ...]) -> tuple[type, ...]:
    # Only modules already imported: an exception's class always is, and a failing
    # command should not import TensorFlow to find out what went wrong.
    return tuple(getattr(sys.modules[m], n) for m, n in names if m in sys.modules)


def expected_error(exc: BaseException) -> BaseException | None:
    """The error to report in one line for ``exc`` when it is an expected failure, else None."""
    if isinstance(exc, _classes(EXPECTED_ERRORS)):
        return exc
    if isinstance(exc, _classes(WRAPPING_ERRORS)):
        cause = exc.__cause__
        if isinstance(cause, _classes(EXPECTED_ERRORS)):
            return cause  # e.g. missing weights: about the machine, not the image named
        if isinstance(cause, (OSError, *_classes(IMAGE_ERRORS))):
            return exc
    return None


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (its class name when it has none)."""
    text = re.sub(r"\s*\n\s*", " ", str(exc).strip())
    return text or type(exc).__name__


# TensorFlow 2.21 prints these while ``import tensorflow`` loads its C++ libraries,
# whatever TF_CPP_MIN_LOG_LEVEL says: absl's lines "I0000 00:00:<seconds>.<micro> <thread> port.cc:153] ..."
# (before absl is initialised, the seconds are the epoch time) and absl's notice about them.
_ABSL_LINE = r"^[{}]\d{{4}} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+\] "
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` like the path finder, and runs its import with the C++ start-up
    lines below ``TF_CPP_MIN_LOG_LEVEL`` filtered out of stderr (everything else is kept)."""

    def __init__(self, level: int) -> None:
        self.drop = re.compile(_ABSL_LINE.format("IWE"[: min(level, 3)]))

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module, _run=run, _loader=loader):
            del _loader.exec_module  # this import only
            with self.filtered_stderr():
                _run(module)

        loader.exec_module = exec_module
        return spec

    @contextlib.contextmanager
    def filtered_stderr(self) -> Iterator[None]:
        """Send file descriptor 2 to a temporary file, then copy back the lines not dropped."""
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                lines = tmp.read().decode(errors="replace").splitlines(keepends=True)
                kept = [ln for ln in lines if not (self.drop.match(ln) or ln.startswith(_ABSL_NOTICE))]
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@contextlib.contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """Inside the block, a first ``import tensorflow`` prints no C++ start-up lines."""
    # TensorFlow's own setting, for what it reads; the filter does the rest
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"]) if os.environ["TF_CPP_MIN_LOG_LEVEL"].isdigit() else 0
    if level < 1 or "tensorflow" in sys.modules:
        yield
        return
    finder = _QuietTensorFlowImport(level)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def run(command: str, argv: list[str]) -> int:
    """Run one sub-command with ``argv``; an expected failure prints one line and returns 2."""
    from .storage import export_keras_home

    export_keras_home()  # before anything imports Keras, and inherited by worker processes
    try:
        with quiet_tensorflow():
            module = importlib.import_module(COMMANDS[command][0])
            return int(module.main(argv) or 0)
    except Exception as exc:
        error = expected_error(exc)
        if error is None:
            raise
        print(f"mammo {command}: error: {one_line(error)}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """The ``mammo`` console script: dispatch to a sub-command (see :data:`COMMANDS`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="mammo",
        description="Mammogram density (BI-RADS 1-4) and tumour (benign/malignant) classification.",
        epilog="Run 'mammo COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if argv and argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if not argv:
        parser.error(f"no command given; choose from {', '.join(COMMANDS)} ('mammo --help' says what each does)")
    if argv[0] not in COMMANDS:
        parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
    if argv[0] == "serve" and sys.platform.startswith("linux") and "MALLOC_ARENA_MAX" not in os.environ:
        # glibc gives each server thread its own malloc arena, which grows the
        # server's memory under concurrent load (docs/results.md); two arenas
        # keep it flat. Only read at process start, hence the re-exec.
        os.environ["MALLOC_ARENA_MAX"] = "2"
        os.execv(sys.executable, [sys.executable, "-m", "mammo.cli", *argv])
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
