"""What the single-image and the exam routes share: the app's state, the model call under an
inference slot, the plain reasons for refused images, and what the pages show of a record."""

from __future__ import annotations

import time

import numpy as np
from flask import current_app

from ..evaluation.card import ModelCard, build_card
from ..features.enhance import enhance
from ..features.quality import ImplausibleImageError
from .inference import UploadError, occlusion_map

__all__ = [
    "analysis_refusal",
    "density_meanings",
    "density_rows",
    "display_pixels",
    "model_card_content",
    "ood_view",
    "outline",
    "predict_image",
    "state",
]


def state() -> dict:
    return current_app.extensions["mammo"]


def analysis_refusal(exc: ValueError) -> UploadError:
    """The 422 for an image the model refused: the input-quality gate's reason, or why it could not be analysed."""
    if isinstance(exc, ImplausibleImageError):
        return UploadError(
            422,
            f"This image cannot be judged: it {_refusal(exc)}. The model analyses "
            "mammograms (a grey X-ray of one breast), nothing else.",
        )
    # ImageReadError (e.g. a crop of an absurd aspect ratio) is a ValueError
    return UploadError(422, f"The image could not be analysed: {exc}")


def _refusal(exc: ImplausibleImageError) -> str:
    """The gate's reason as the rest of a sentence starting "it ..."."""
    text = str(exc).split(": ", 1)[-1]
    return (
        text.replace("the image is", "is")
        .replace("the image has", "has")
        .replace("no breast was found", "shows no breast")
    )


def predict_image(image: np.ndarray, *, heatmap: bool, enhanced: bool) -> dict:
    """Predictions (and optionally the enhanced view and occlusion map) under an inference slot."""
    st = state()
    model = st["model"]
    out: dict = {}
    with st["slots"]:
        t0 = time.perf_counter()
        try:
            if enhanced:
                records, prepared = model.analyse([image])
                out["record"], out["enhanced"] = records[0], prepared[0]
            else:
                out["record"] = model.predict_records([image])[0]
            if heatmap:
                t1 = time.perf_counter()
                out["occlusion"] = occlusion_map(
                    model.with_gate(False),  # the altered copies of an image the gate accepted
                    image,
                    grid=current_app.config["MAMMO_HEATMAP_GRID"],
                    max_side=current_app.config["MAMMO_HEATMAP_MAX_SIDE"],
                )
                out["heatmap_seconds"] = time.perf_counter() - t1
        except UploadError:
            raise
        except ValueError as exc:  # ImplausibleImageError and ImageReadError are ValueErrors
            raise analysis_refusal(exc) from None
        out["seconds"] = time.perf_counter() - t0
    return out


def display_pixels(prepared) -> np.ndarray:
    """The enhanced view: what the model sees, or, for a model trained on unenhanced
    crops (``make_task_pipeline(enhance=False)``), the default enhancement of that crop."""
    step = next(iter(state()["model"].pipelines.values())).named_steps.get("enhance")
    if step is not None and step.clip_limit == 0 and step.unsharp_amount == 0:
        return enhance(prepared.pixels, prepared.mask)
    return prepared.pixels


def outline(prepared, crop) -> list:
    """The breast's outline in the uploaded image's pixels (the analysed region may be a crop of it)."""
    dy, dx = (crop.y, crop.x) if crop else (0, 0)
    return [c + (dy, dx) for c in prepared.outline()]


def ood_view(record: dict) -> dict | None:
    if "in_distribution" not in record:
        return None
    ood = state()["model"].ood
    return {
        "ok": record["in_distribution"],
        "score": record["ood_score"],
        "threshold": record["ood_threshold"],
        "tail": 1.0 - ood["model"].quantile,
    }


def density_meanings() -> dict:
    """``{grade as str: meaning}`` from the model's metadata (empty when it has none)."""
    return state()["model"].metadata.get("tasks", {}).get("density", {}).get("class_meanings", {})


def density_rows(density: dict) -> list[dict]:
    meanings = density_meanings()
    return [
        {
            "cls": c,
            "meaning": meanings.get(c, c),
            "p": p,
            "predicted": str(density["label"]) == c,
        }
        for c, p in density["probabilities"].items()
    ]


def model_card_content() -> ModelCard:
    """The loaded model's card, built from its metadata (what the result page summarises)."""
    st = state()
    return build_card(st["model"].metadata, model_file=st["info"])
