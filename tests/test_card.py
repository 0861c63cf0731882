"""The model card: written by ``mammo train`` beside the model, summarised on the result page,
served in full at ``/model-card`` (and built from the metadata of a model saved without one).

One small real run (texture features, SVM and XGBoost, no TensorFlow) is shared by the module.
"""

from __future__ import annotations

import base64
import configparser
import copy
import fnmatch
import hashlib
import io
import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape
from PIL import Image
from test_train_pipeline import make_manifest

from mammo.classifiers import file_sha256, load_model
from mammo.evaluation.card import (
    CARD_FILES,
    NOT_MEASURED,
    build_card,
    card_html,
    card_markdown,
    card_style_hash,
)
from mammo.testing import run_until_closed, synthetic_mammogram
from mammo.training.cli import main as train

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--feature-sets",
    "texture",
    "--models",
    "svm",
    "xgboost",
    "--no-deep",
    "--jobs",
    "1",
    "--quiet",
    "--bootstrap",
    "200",
    "--folds",
    "4",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("card_run")
    csv = make_manifest(root / "data")
    out = root / "run"
    assert train([str(csv), "--kind", "manifest", "--out", str(out), "--cache-dir", str(root / "cache"), *ARGS]) == 0
    return out


@pytest.fixture(scope="module")
def metrics(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def card_files(run_dir) -> tuple[str, str]:
    md, html = ((run_dir / name).read_text(encoding="utf-8") for name in CARD_FILES)
    return md, html


@pytest.fixture(scope="module")
def client(run_dir):
    pytest.importorskip("flask_wtf")
    from mammo.webapp import create_app

    return create_app({"MAMMO_MODEL": str(run_dir / "model.joblib"), "TESTING": True}).test_client()


def _png(seed: int = 1) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(synthetic_mammogram(np.random.default_rng(seed), 3, uint8=True)).save(buf, format="PNG")
    return buf.getvalue()


def _result_page(client) -> str:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    resp = client.post(
        "/predict",
        data={"csrf_token": token, "file": (io.BytesIO(_png()), "scan.png")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_data(as_text=True)


def _text(html: str) -> str:
    """The page's visible text, tags dropped and entities of quotes undone (for phrase checks)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'").replace("&amp;", "&")


# ------------------------------------------------------------------------------ the run's card


def test_training_writes_the_card_beside_the_model(run_dir, card_files):
    md, html = card_files
    assert (run_dir / "model.joblib").is_file()
    for doc in (md, _text(html)):
        assert "Research use only, not for diagnosis." in doc
        for heading in (
            "Intended use",
            "Out-of-scope use",
            "Training data",
            "Evaluation protocol",
            "Candidates compared",
            "Chosen pipelines",
            "Subgroup results",
            "Out-of-distribution rate",
            "Limitations",
            "Versions and hashes",
        ):
            assert heading in doc, heading
        assert "Diagnosis, screening, triage" in doc and "not a medical device" in doc
        assert "Research and teaching" in doc
    assert md.startswith('---\nlibrary_name: "mammo"')  # Hugging Face style front matter
    assert html.lstrip().startswith("<!doctype html>") and "http://" not in html and "https://" not in html


def test_card_numbers_are_the_runs_metrics(metrics, card_files, run_dir):
    md, html = card_files
    meta = load_model(run_dir / "model.joblib").metadata
    card = build_card(meta, metrics)
    for task in card.tasks:
        recorded = metrics["tasks"][task.task]
        assert task.chosen == recorded["best"] and [c.name for c in task.candidates] == list(recorded["candidates"])
        for cand in task.candidates:
            pooled = recorded["candidates"][cand.name]["pooled"]
            spread = recorded["candidates"][cand.name]["folds_summary"][task.metric]
            score = cand.scores[task.metric]
            assert score.value == pooled[task.metric]
            assert (score.fold_mean, score.fold_std) == (spread["mean"], spread["std"])
            assert score.ci95 == (tuple(pooled[f"{task.metric}_ci95"]) if f"{task.metric}_ci95" in pooled else None)
            row = f"{pooled[task.metric]:.3f}"
            if score.ci95:
                row += f" [{score.ci95[0]:.3f}, {score.ci95[1]:.3f}]"
            row += f" | {spread['mean']:.3f} ± {spread['std']:.3f}"
            assert row in md, row
            assert f"<td>{row.replace(' | ', '</td><td>')}</td>" in html
    tumour = metrics["tasks"]["tumour"]["candidates"][metrics["tasks"]["tumour"]["best"]]["pooled"]
    lo, hi = tumour["auc_ci95"]
    assert f"AUC {tumour['auc']:.3f} (95% CI {lo:.3f}–{hi:.3f}" in md
    assert "QWK" in md and f"QWK 95% CI: {NOT_MEASURED}" in md  # density: the run records no interval
    assert f"**{metrics['tasks']['density']['best']} (selected)**" in md
    sel = metrics["tasks"]["density"]["selection_estimate"]
    assert f"scores QWK {sel['score']:.3f}, against {sel['selected_score']:.3f}" in md
    held = metrics["ood"]["held_out_flagged"]
    assert f"flagged {100 * held['pooled']:.1f}% of its {held['n']} in-domain held-out images" in md
    assert f"{metrics['dataset']['n_images']} images in {metrics['dataset']['n_groups']} groups" in md
    # the selected pipelines' crop-shift check, from the run and, the same, from the model alone
    best = {t: metrics["tasks"][t]["candidates"][metrics["tasks"][t]["best"]]["crop_shift"] for t in metrics["tasks"]}
    assert meta["cv_metrics"]["tumour"]["crop_shift"] == best["tumour"]
    line = (
        f"Moving the breast's crop by half a pixel changes {1 - best['density']['grades_unchanged']:.0%} of its "
        f"density grades and moves P(malignant) by a median {best['tumour']['p_change_median']:.3f}"
    )
    assert line in md and line in card_markdown(build_card(meta))


def test_card_names_the_model_by_its_hashes_and_versions(metrics, card_files, run_dir):
    md, html = card_files
    sha = file_sha256(run_dir / "model.joblib")
    assert metrics["final_model"]["sha256"] == sha
    meta = load_model(run_dir / "model.joblib").metadata
    for doc in (md, html):
        assert sha in doc and meta["pipeline_id"] in doc
        assert f"scikit-learn {meta['versions']['scikit-learn']}" in doc
        assert "4-fold StratifiedGroupKFold, seed 0" in doc
    assert f"| model sha256 | {sha} |" in md
    assert SUBGROUPS_NOT_MEASURED in md


SUBGROUPS_NOT_MEASURED = (
    f"Results by subgroup (scanner, site, age, density grade for the tumour task, lesion type): {NOT_MEASURED}"
)


def test_subgroup_section_shows_measured_levels_and_keeps_not_measured_without_them(metrics, run_dir):
    meta = load_model(run_dir / "model.joblib").metadata
    section = next(s for s in build_card(meta, metrics).sections if s.title == "Subgroup results")
    assert section.lines == [SUBGROUPS_NOT_MEASURED + "; the run scores all images of a task together."]
    rows = [
        {
            "level": "1",
            "n": 40,
            "n_patients": 12,
            "n_pos": 15,
            "metric": "auc",
            "value": 0.6123,
            "ci95": [0.5011, 0.7234],
        },
        {
            "level": "170",
            "n": 6,
            "n_patients": 2,
            "n_pos": 1,
            "metric": "auc",
            "value": None,
            "ci95": None,
            "too_few": "too few cases: 1 patient with a malignant image, 2 with a non-malignant one",
        },
    ]
    run = copy.deepcopy(metrics)
    run["tasks"]["tumour"]["subgroups"] = {"site": rows[:1], "machine": rows[1:]}
    card = build_card(meta, run)
    section = next(s for s in card.sections if s.title == "Subgroup results")
    assert [s.title for s in section.subsections] == ["Tumour"]  # density has none: said so
    assert any("Density by subgroup: " + NOT_MEASURED in line for line in section.lines)
    table = section.subsections[0].table
    assert table.rows == [
        ["site", "1", "40", "12", "15", "0.612 [0.501, 0.723]"],
        ["machine", "170", "6", "2", "1", rows[1]["too_few"]],
    ]
    md = card_markdown(card)
    assert "| site | 1 | 40 | 12 | 15 | 0.612 [0.501, 0.723] |" in md and SUBGROUPS_NOT_MEASURED not in md
    assert "<td>too few cases: 1 patient with a malignant image" in card_html(card)
    # a card built from the model's metadata alone reads them from cv_metrics
    meta = copy.deepcopy(meta)
    meta["cv_metrics"]["tumour"]["subgroups"] = run["tasks"]["tumour"]["subgroups"]
    assert "| machine | 170 | 6 | 2 | 1 | too few cases" in card_markdown(build_card(meta))


def test_markdown_and_html_are_one_card(metrics, card_files, run_dir):
    md, html = card_files
    card = build_card(load_model(run_dir / "model.joblib").metadata, metrics)
    assert card_markdown(card) == md and card_html(card) == html  # what the run wrote is this card
    for section in card.sections:
        assert f"## {section.title}" in md and f"<h2>{section.title}</h2>" in html
        for line in section.lines:
            assert line.replace("|", "\\|") in md
            assert str(escape(line)) in html


def test_user_strings_are_escaped():
    meta = {
        "training_data": {"name": "<script>alert(1)</script>", "n_images": 3, "n_groups": 2},
        "pipeline_id": "x|<img src=x onerror=alert(1)>",
        "cv_metrics": {
            "tumour": {
                "candidate": "<b>c</b>",
                "table": {"<b>c</b>": {"auc": 0.5, "auc_ci95": [0.4, 0.6]}},
                "protocol": "2-fold StratifiedGroupKFold, seed 0",
            }
        },
    }
    html = card_html(build_card(meta))
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>c</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;c&lt;/b&gt; (selected)" in html
    md = card_markdown(build_card(meta))
    assert "<script>" not in md and "x\\|&lt;img" in md  # no raw HTML, no broken table


def test_a_model_without_evaluation_says_what_was_not_measured():
    card = build_card(
        {
            "training_data": {"source": "synthetic mammograms", "n_images": 24},
            "pipeline_id": "demo",
            "tasks": {"density": {"steps": ["read", "clf"], "features": ["glcm"], "model": "SVC", "n_train": 24}},
        },
        model_file={"file": "demo.joblib", "sha256": "ab" * 32},
    )
    md = card_markdown(card)
    assert "Trained on synthetic mammograms: 24 images." in md
    assert f"Density pipeline: glcm → SVC; cross-validated performance {NOT_MEASURED}." in md
    assert f"Cross-validation: {NOT_MEASURED}" in md and f"Out-of-distribution rate: {NOT_MEASURED}" in md
    assert f"How far the answers move when the breast's crop moves slightly: {NOT_MEASURED}." in md
    assert "ab" * 32 in md and "| candidate |" not in md
    assert not re.search(r"\d\.\d{3}", md)  # no score appears that the records do not hold


def test_package_data_ships_the_card_templates():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["mammo.evaluation.card"].split(",")]
    folder = ROOT / "mammo" / "evaluation" / "card"
    files = [p.relative_to(folder).as_posix() for p in (folder / "templates").rglob("*") if p.is_file()]
    assert {"templates/model_card.html", "templates/macros.html", "templates/card.css"} <= set(files)
    assert all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in files), (files, patterns)


# ------------------------------------------------------------------------------ the web app


def test_result_page_summarises_the_card_instead_of_flattened_keys(client, metrics, run_dir):
    html = _result_page(client)
    section = html[html.index('id="provenance"') : html.index("Analyse another image")]
    text = _text(section)
    assert "cv_metrics." not in html and "training_data." not in html and "table.texture" not in html
    assert (
        f"Trained on labels: {metrics['dataset']['n_images']} images in {metrics['dataset']['n_groups']} groups" in text
    )
    for task, key in (("density", "qwk"), ("tumour", "auc")):
        best = metrics["tasks"][task]["best"]
        pooled = metrics["tasks"][task]["candidates"][best]["pooled"]
        assert f"{task.capitalize()} pipeline: {best}, {key.upper()} {pooled[key]:.3f}" in text
        for name, cand in metrics["tasks"][task]["candidates"].items():
            ci = cand["pooled"].get(f"{key}_ci95")
            cell = f"{cand['pooled'][key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            assert re.search(
                rf"<th scope=\"row\">{re.escape(name)}( \(selected\))?</th><td>{re.escape(cell)}</td>", section
            ), (name, cell)
    lo, hi = metrics["tasks"]["tumour"]["candidates"][metrics["tasks"]["tumour"]["best"]]["pooled"]["auc_ci95"]
    assert f"95% CI {lo:.3f}–{hi:.3f}" in text
    assert "Research use only, not for diagnosis." in text
    assert 'href="/model-card"' in section
    assert len(section) < 6000  # a summary, not the card


def test_model_card_route_serves_the_runs_card(client, run_dir):
    resp = client.get("/model-card")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert html == (run_dir / CARD_FILES[1]).read_text(encoding="utf-8")
    # the CSP allows exactly the card's own <style> element, nothing inline beyond it
    style = re.search(r"<style>(.*?)</style>", html, re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    csp = resp.headers["Content-Security-Policy"]
    assert f"'sha256-{digest}'" in csp and card_style_hash() in csp and "unsafe-inline" not in csp
    assert re.findall(r"<script", html) == [] and " style=" not in html


def test_healthz_and_api_keep_the_machine_readable_metadata(client, run_dir):
    body = client.get("/healthz").get_json()
    meta = load_model(run_dir / "model.joblib").metadata
    assert set(body["model"]) == {"file", "sha256", "verified_manifest", "loaded_at", "pipeline_id", "tasks"}
    assert body["model"]["pipeline_id"] == meta["pipeline_id"]
    api = client.post(
        "/api/predict", data={"file": (io.BytesIO(_png()), "scan.png")}, content_type="multipart/form-data"
    )
    assert api.status_code == 200 and api.get_json()["model"]["pipeline_id"] == meta["pipeline_id"]


def test_a_model_without_a_card_file_gets_one_from_its_metadata(run_dir, tmp_path, texture_model_path):
    pytest.importorskip("flask_wtf")
    from mammo.webapp import create_app

    # an older model, beside a card that another model left in the folder
    model = shutil.copy(texture_model_path, tmp_path / "old.joblib")
    shutil.copy(run_dir / CARD_FILES[1], tmp_path / CARD_FILES[1])
    client = create_app({"MAMMO_MODEL": str(model), "TESTING": True}).test_client()
    resp = client.get("/model-card")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert file_sha256(model) in html and file_sha256(run_dir / "model.joblib") not in html
    assert html == card_html(
        build_card(load_model(model).metadata, model_file={"file": "old.joblib", "sha256": file_sha256(model)})
    )
    text = _text(html)
    assert "Research use only, not for diagnosis." in text and f"Cross-validation: {NOT_MEASURED}" in text
    assert "Built from the saved model's metadata alone" in text
    page = _result_page(client)
    assert "cv_metrics." not in page and f"cross-validated performance {NOT_MEASURED}" in _text(page)


def test_model_card_renders_styled_in_a_browser_without_csp_violations(run_dir):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from mammo.webapp import create_app, make_server

    server = make_server(create_app({"MAMMO_MODEL": str(run_dir / "model.joblib")}), "127.0.0.1", 0, threads=1)
    thread = threading.Thread(target=run_until_closed, args=(server,), daemon=True)
    thread.start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(f"http://127.0.0.1:{server.effective_port}/model-card")
            background = page.eval_on_selector(".research-only", "e => getComputedStyle(e).backgroundColor")
            page.screenshot(path=str(run_dir / "model-card.png"), full_page=True)
            browser.close()
    finally:
        server.close()
        thread.join(5)
    assert problems == []
    assert background == "rgb(255, 244, 224)"  # the card's own style applied
    assert (run_dir / "model-card.png").stat().st_size > 10_000
