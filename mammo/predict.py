"""``mammo predict``: density and tumour predictions for many files, streamed into a CSV.

Files, folders (searched recursively) and glob patterns are accepted; DICOM
included. A file that cannot be read, or that is not a mammogram (the
input-quality gate), gets its error in the ``error`` column and the run goes on;
every other row has ``ood_score`` and ``in_distribution`` (false: unlike every
training image, do not trust the row); the exit status is 1 when any file failed, 0 otherwise,
and 2 when the run cannot start (bad arguments, no usable model, no images, an output that
cannot be written, CNN weights that are unavailable): one line on stderr says why.

``--by breast`` and ``--by exam`` write one row per breast or per exam instead: P(malignant)
of a breast is the mean of its views', an exam's density the median of its views' grades
(the denser middle of an even count). Views are told apart by ``--views`` (a CSV with
``path`` and any of ``exam``, ``laterality``, ``view``), else by the DICOM header
(StudyInstanceUID / PatientID, ImageLaterality / Laterality, ViewPosition), else by the
file name (``P001_L_CC.png``, ``P001-RMLO.dcm``; see :mod:`mammo.exams`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from pathlib import Path

from .conventions import InputError, image_command_parser, images_for_command
from .storage import check_output_dir

#: tumour_label in the CSV, by class (0/1)
TUMOUR_NAMES = {0: "Benign", 1: "Malignant"}
DEFAULT_MODEL = "runs/default/model.joblib"  # where make run puts it


def _columns(model) -> list[str]:
    cols = ["file"]
    if "density" in model.pipelines:
        cols += ["density_label"] + [f"p_density_{c}" for c in model.classes("density")]
    if "tumour" in model.pipelines:
        cols += ["tumour_label", "p_malignant", "tumour_threshold"]
    if model.ood is not None:
        cols += ["ood_score", "in_distribution"]
    return cols + ["pipeline_id", "error"]


def predict_to_csv(model, paths: list[str], out, *, progress: bool = True) -> int:
    """Write one CSV row per path to the open text file ``out``; returns the number of failures."""
    pipeline_id = model.metadata.get("pipeline_id", "")
    writer = csv.DictWriter(out, fieldnames=_columns(model))
    writer.writeheader()
    failed = 0
    for indices, proba, ood, failures in model.iter_predict(paths, errors="record", progress=progress):
        rows = {}
        # labels by the model's own rule (cut points, tumour threshold), as in the API and on the page
        labels = {task: model.labels(task, p) for task, p in proba.items() if p is not None}
        for k, i in enumerate(indices):
            row = {"file": paths[i], "pipeline_id": pipeline_id, "error": ""}
            if "density" in proba:
                p = proba["density"][k]
                row["density_label"] = labels["density"][k]
                row.update({f"p_density_{c}": f"{v:.6f}" for c, v in zip(model.classes("density"), p)})
            if "tumour" in proba:
                row["tumour_label"] = TUMOUR_NAMES[int(labels["tumour"][k])]
                row["p_malignant"] = f"{float(proba['tumour'][k][1]):.6f}"
                row["tumour_threshold"] = f"{model.threshold:.6f}"
            if ood is not None:
                row["ood_score"] = f"{float(ood[0][k]):.4f}"
                row["in_distribution"] = "true" if ood[1][k] else "false"
            rows[i] = row
        for i, message in failures.items():
            rows[i] = {"file": paths[i], "pipeline_id": pipeline_id, "error": message}
            failed += 1
        for i in sorted(rows):
            writer.writerow(rows[i])
        out.flush()
    return failed


def _write(model, paths: list[str], out, by: str, views, *, progress: bool) -> int:
    if by == "image":
        return predict_to_csv(model, paths, out, progress=progress)
    from .exam_csv import write_aggregated

    return write_aggregated(model, paths, out, by, views=views, progress=progress)


def fetch_cnn_weights(model) -> None:
    """Find, or download here and once, the ImageNet weights of the model's CNN blocks.

    Without them :class:`~mammo.features.cnn.WeightsUnavailableError` is raised before
    any worker starts: worker threads failing together inside TensorFlow can abort the
    process as it exits, after the message.
    """
    from sklearn.pipeline import FeatureUnion

    from .features.cnn import CNNEmbedding, load_backbone, resolve_weights

    for pipe in model.pipelines.values():
        for _, step in pipe.steps:
            blocks = [t for _, t in step.transformer_list] if isinstance(step, FeatureUnion) else [step]
            for b in blocks:
                if (
                    isinstance(b, CNNEmbedding)
                    and not Path(resolve_weights(str(b.weights), int(b.input_size))).is_file()
                ):
                    load_backbone(str(b.weights), int(b.input_size))


@contextlib.contextmanager
def dask_backend(scheduler: str, timeout: float = 30):
    """Run joblib work (the feature extraction) on the Dask cluster at ``scheduler``."""
    import joblib

    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError("the Dask backend needs 'pip install dask[distributed]'") from exc
    with Client(scheduler, timeout=timeout) as client, joblib.parallel_config(backend="dask"):
        yield client


def build_parser() -> argparse.ArgumentParser:
    """The ``mammo predict`` argument parser."""
    parser = image_command_parser(
        "mammo predict",
        __doc__,
        "mammo predict scans/ extra/*.dcm --model runs/default/model.joblib --out predictions.csv",
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("MAMMO_MODEL", DEFAULT_MODEL),
        help=f"saved model from 'mammo train' (default: $MAMMO_MODEL or {DEFAULT_MODEL})",
    )
    parser.add_argument("--manifest", help="verify the model file's sha256 against this manifest before loading")
    parser.add_argument("--out", default="-", help="CSV file to write (default: standard output)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per streamed chunk (default: 32)")
    parser.add_argument("--jobs", type=int, default=None, help="chunks processed at once (default: one per core)")
    parser.add_argument(
        "--backend",
        choices=["local", "dask"],
        default="local",
        help="where feature extraction runs: this machine (threads) or a Dask cluster (default: local)",
    )
    parser.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (with --backend dask)")
    parser.add_argument(
        "--by",
        choices=["image", "breast", "exam"],
        default="image",
        help="one row per image (default), per breast (views averaged) or per exam (density: median of the views)",
    )
    parser.add_argument(
        "--views",
        help="CSV naming each file's exam, laterality and view (columns path, exam, "
        "laterality, view); default: DICOM tags, else the file name",
    )
    parser.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``mammo predict``: 0 when every file was predicted, 1 when any failed (see the module doc)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.backend == "dask" and not args.scheduler:
        parser.error("--backend dask needs --scheduler ADDRESS")
    if args.out != "-":
        if Path(args.out).is_dir():
            parser.error(f"--out {args.out} is a folder; give the CSV file to write")
        check_output_dir(Path(args.out).parent)
    from .classifiers import load_model

    paths, missing = images_for_command(args.inputs, "mammo predict")
    if args.views and args.by == "image":
        parser.error("--views needs --by breast or --by exam")
    views = None
    if args.by != "image":
        from .exam_csv import read_views, views_for_files

        views = views_for_files(paths, read_views(args.views) if args.views else None)
    model = load_model(args.model, manifest=args.manifest)
    fetch_cnn_weights(model)
    model.batch_size, model.n_jobs = args.batch_size, args.jobs
    with contextlib.ExitStack() as stack:
        if args.backend == "dask":
            try:
                stack.enter_context(dask_backend(args.scheduler))
            except (ImportError, OSError) as exc:
                raise InputError(f"cannot use the Dask scheduler {args.scheduler}: {exc}") from exc
        if args.out == "-":
            failed = _write(model, paths, sys.stdout, args.by, views, progress=args.progress)
        else:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "w", newline="") as out:
                failed = _write(model, paths, out, args.by, views, progress=args.progress)
    print(f"mammo predict: {len(paths) - failed} predicted, {failed} failed", file=sys.stderr)
    return 1 if failed or missing else 0


if __name__ == "__main__":
    from .cli import run

    raise SystemExit(run("predict", sys.argv[1:]))
