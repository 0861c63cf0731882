"""The two layouts of a :class:`~.content.ModelCard`: Markdown (:func:`card_markdown`) and a
standalone HTML page (:func:`card_html`, Jinja templates of this package, autoescaped), and
:func:`write_model_card`, which writes both beside a saved model."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from .content import ModelCard, Section, build_card
from .text import RESEARCH_ONLY

__all__ = ["CARD_FILES", "card_html", "card_markdown", "card_style_hash", "template_loader", "write_model_card"]

#: What :func:`write_model_card` writes beside the model: the Markdown and the HTML card.
CARD_FILES = ("MODEL_CARD.md", "MODEL_CARD.html")


def _md(value: Any) -> str:
    """Text for Markdown: no table breaks, no raw HTML (names and notes come from the user's data)."""
    return (
        str(value)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\n", " ")
    )


def _md_section(s: Section, level: int) -> list[str]:
    out = [f"{'#' * level} {_md(s.title)}", ""]
    if s.table:
        t = s.table
        out += ["| " + " | ".join(_md(h) for h in t.header) + " |", "|" + "---|" * len(t.header)]
        for i, row in enumerate(t.rows):
            cells = [_md(c) for c in row]
            if i == t.highlight:
                cells[0] = f"**{cells[0]}**"
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    if s.lines:
        out += [f"- {_md(line)}" for line in s.lines] + [""]
    for sub in s.subsections:
        out += _md_section(sub, level + 1)
    return out


def card_markdown(card: ModelCard) -> str:
    """The card as Markdown, with Hugging Face style YAML front matter (its JSON values are YAML)."""
    lines = [
        "---",
        *(f"{k}: {json.dumps(v)}" for k, v in card.front_matter.items() if v is not None),
        "---",
        "",
        f"# {_md(card.title)}",
        "",
        f"**{RESEARCH_ONLY}**",
        "",
    ]
    for s in card.sections:
        lines += _md_section(s, 2)
    lines += [f"_{_md(card.source)}_", ""]
    return "\n".join(lines)


def template_loader():
    """A Jinja loader of this package's templates under ``card/`` (the web app adds it to its own)."""
    from jinja2 import PackageLoader, PrefixLoader

    return PrefixLoader({"card": PackageLoader("mammo.evaluation.card", "templates")})


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, StrictUndefined

    return Environment(
        loader=template_loader(), autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )


@lru_cache(maxsize=1)
def _css() -> str:
    env = _environment()
    return env.loader.get_source(env, "card/card.css")[0]


def card_style_hash() -> str:
    """The Content-Security-Policy source (``'sha256-...'``) that allows the HTML card's ``<style>``."""
    digest = hashlib.sha256(_css().encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def card_html(card: ModelCard) -> str:
    """The card as a standalone HTML page: styles inline, nothing fetched, every text escaped."""
    return (
        _environment().get_template("card/model_card.html").render(card=card, css=_css(), research_only=RESEARCH_ONLY)
    )


def write_model_card(
    folder: str | Path,
    metadata: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    model_file: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``MODEL_CARD.md`` and ``MODEL_CARD.html`` (:func:`~.content.build_card`) into ``folder``."""
    card = build_card(metadata, metrics, model_file)
    md, html = (Path(folder) / name for name in CARD_FILES)
    md.write_text(card_markdown(card), encoding="utf-8")
    html.write_text(card_html(card), encoding="utf-8")
    return md, html
