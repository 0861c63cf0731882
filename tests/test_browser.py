"""Real-browser test: headless Chromium (Debian's package) driven by Playwright against waitress.

Needs ``apt-get install chromium`` and ``pip install playwright`` (never ``playwright install``:
the system Chromium is used). Skips with a reason when either, or the sample image, is missing.
"""

from __future__ import annotations

import base64
import re
import shutil
import threading
from pathlib import Path

import pytest

pytest.importorskip("flask_wtf", reason="Flask-WTF is needed for the web app's CSRF protection")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)"
)

from mammo.testing import run_until_closed  # noqa: E402
from mammo.webapp import create_app, make_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGE = DATA / "dphi-sprint31" / "train" / "Image_1.jpg"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server_url(texture_model_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    app = create_app({"MAMMO_MODEL": str(texture_model_path)})
    server = make_server(app, "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=run_until_closed, args=(server,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(5)


@pytest.fixture()
def page(server_url):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.problems = problems
        yield page
        browser.close()


def _drag(page, selector: str, frm: tuple[float, float], to: tuple[float, float]) -> None:
    box = page.locator(selector).bounding_box()
    page.mouse.move(box["x"] + frm[0] * box["width"], box["y"] + frm[1] * box["height"])
    page.mouse.down()
    for k in range(1, 11):  # several moves, as a hand would
        f = k / 10
        page.mouse.move(
            box["x"] + (frm[0] + f * (to[0] - frm[0])) * box["width"],
            box["y"] + (frm[1] + f * (to[1] - frm[1])) * box["height"],
        )
    page.mouse.up()


#: Counts the outline's cyan pixels of an <img> (a same-origin data: URL, so the canvas may be read).
CYAN_PIXELS = """img => {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext("2d"); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 60 && d[i + 1] > 180 && d[i + 2] > 220) n++;
    return n;
}"""


def _submit(page, result_selector: str, shot: Path) -> Path:
    """Submit the upload form, wait for ``result_selector`` on the result page, keep a full-page screenshot."""
    with page.expect_navigation(timeout=60_000):
        page.click("#submit")
    page.wait_for_selector(result_selector, timeout=60_000)
    page.screenshot(path=str(shot), full_page=True)
    return shot


def test_upload_crop_and_predict_in_chromium(page, server_url, tmp_path):
    if not IMAGE.is_file():
        pytest.skip(f"sample mammogram {IMAGE} is absent (../shared/data not mounted)")
    page.goto(server_url + "/")
    assert "Research tool, not a diagnosis" in page.inner_text(".disclaimer")
    page.set_input_files("#file", str(IMAGE))
    page.wait_for_selector("#crop-canvas", state="visible", timeout=20_000)
    # Preview of a 224x224 JPEG: drag a box over the middle 80% of it.
    _drag(page, "#crop-canvas", (0.1, 0.1), (0.9, 0.9))
    crop = page.input_value("#crop")
    x, y, w, h = (int(v) for v in crop.split(","))
    assert abs(x - 22) <= 3 and abs(y - 22) <= 3 and abs(w - 179) <= 4 and abs(h - 179) <= 4, crop
    assert "Crop: " in page.inner_text("#crop-text")
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)

    page.check("#heatmap")
    shot = _submit(page, "#density-label", tmp_path / "result.png")
    print(f"screenshots: {tmp_path / 'upload.png'} {shot}")
    # the original as shown carries the breast outline (cyan), as the browser renders it
    assert page.eval_on_selector(".images figure img", CYAN_PIXELS) > 50

    density = page.inner_text("#density-label")
    assert re.match(r"[ABCD] - ", density), density
    assert re.search(r"(Benign|Malignant)", page.inner_text("#tumour-label"))
    p = float(page.inner_text("#p-malignant"))
    t = float(page.inner_text("#threshold"))
    assert 0 <= p <= 1 and 0 < t < 1
    assert f"analysed region {w}×{h} at ({x}, {y})" in page.inner_text("#result")
    # The three images really rendered (data: URLs allowed by the CSP) with their natural sizes.
    sizes = page.eval_on_selector_all("#result img", "els => els.map(e => [e.complete, e.naturalWidth])")
    assert len(sizes) == 3 and all(done and width > 0 for done, width in sizes), sizes
    assert page.locator("#provenance").inner_text().count("pipeline") >= 2
    assert not page.problems, page.problems  # no script errors, no CSP violations
    assert shot.stat().st_size > 20_000


def test_drag_and_drop_shows_the_preview(page, server_url):
    if not IMAGE.is_file():
        pytest.skip(f"sample mammogram {IMAGE} is absent (../shared/data not mounted)")
    page.goto(server_url + "/")
    data = base64.b64encode(IMAGE.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.jpg", {type: "image/jpeg"}));
            return dt;
        }""",
        data,
    )
    page.dispatch_event("#dropzone", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#crop-canvas", state="visible", timeout=20_000)
    assert page.eval_on_selector("#file", "el => el.files.length") == 1
    assert page.eval_on_selector("#crop-canvas", "el => [el.dataset.originalWidth, el.dataset.originalHeight]") == [
        "224",
        "224",
    ]
    # Submitting without a crop analyses the whole image.
    with page.expect_navigation(timeout=60_000):
        page.click("#submit")
    page.wait_for_selector("#density-label", timeout=60_000)
    assert "Original, 224×224 px." in page.inner_text("#result")
    assert not page.problems, page.problems


def test_bad_file_shows_a_message_not_a_traceback(page, server_url, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.goto(server_url + "/")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#preview-error", state="visible", timeout=20_000)
    assert "not an image" in page.inner_text("#preview-error")
    page.problems.clear()  # the failed preview fetch logs its 415 to the console
    with page.expect_navigation(timeout=30_000):
        page.click("#submit")
    assert "not an image" in page.inner_text("#error")
    assert "Traceback" not in page.content()


def _exam_files(folder: Path) -> list[str]:
    """Four synthetic views named by the file-name convention except the last, whose side and view the form gives."""
    import numpy as np
    from PIL import Image

    from mammo.testing import synthetic_mammogram

    paths = []
    for k, name in enumerate(["P9_L_CC.png", "P9_L_MLO.png", "P9_R_CC.png", "P9_scan4.png"]):
        img = synthetic_mammogram(np.random.default_rng(60 + k), 1 + k, shape=(160, 128), film_label=False, uint8=True)
        Image.fromarray(img).save(folder / name)
        paths.append(str(folder / name))
    return paths


def test_exam_upload_in_chromium(page, server_url, tmp_path):
    page.goto(server_url + "/")
    files = _exam_files(tmp_path)
    page.set_input_files("#file", files)
    page.wait_for_selector("#views-panel", state="visible", timeout=10_000)
    # one breast and one view select per file, labelled; no crop and no heatmap for several files
    assert page.locator("#views-list fieldset").count() == 4
    assert page.locator("#views-list legend").all_inner_texts() == [Path(f).name for f in files]
    assert page.locator("label[for='laterality-3']").inner_text().strip() == "Breast"
    assert page.is_hidden("#crop-panel") and page.is_disabled("#heatmap")
    page.select_option("#laterality-3", "R")
    page.select_option("#view-3", "MLO")
    form_shot = tmp_path / "exam-form.png"
    page.screenshot(path=str(form_shot), full_page=True)

    result_shot = _submit(page, "#breasts", tmp_path / "exam-result.png")
    print(f"screenshots: {form_shot} {result_shot}")

    cards = page.locator(".view-card")
    assert cards.count() == 4 and all(cards.nth(k).is_visible() for k in range(4))
    titles = [" ".join(t.split()) for t in page.locator(".view-card h3").all_inner_texts()]
    assert titles == ["Left breast, CC", "Left breast, MLO", "Right breast, CC", "Right breast, MLO"], titles
    assert "breast from the form" in page.inner_text("#view-4")
    for k in range(4):
        assert 0 <= float(cards.nth(k).locator(".view-p").inner_text()) <= 1
        assert re.match(r"[ABCD] - ", cards.nth(k).locator(".view-density").inner_text())
    sizes = page.eval_on_selector_all(".view-card img", "els => els.map(e => [e.complete, e.naturalWidth])")
    assert len(sizes) == 4 and all(done and width > 0 for done, width in sizes), sizes
    rows = page.locator("#breasts tbody tr")
    assert rows.count() == 2 and rows.nth(0).is_visible()
    assert [rows.nth(k).locator("th").inner_text() for k in range(2)] == ["Left breast", "Right breast"]
    # each breast's P(malignant) is the mean of its two views' on the page
    p = [float(cards.nth(k).locator(".view-p").inner_text()) for k in range(4)]
    for k, (a, b) in enumerate(((0, 1), (2, 3))):
        assert abs(float(rows.nth(k).locator(".breast-p").inner_text()) - (p[a] + p[b]) / 2) <= 0.0015
    assert page.is_visible("#exam-density-label") and re.match(r"[ABCD] - ", page.inner_text("#exam-density-label"))
    assert "median" in page.inner_text("#density-rule") and "AUC per breast" in page.inner_text("#breast-rule")
    assert not page.problems, page.problems  # no script errors, no CSP violations
    assert form_shot.stat().st_size > 10_000 and result_shot.stat().st_size > 20_000


def test_back_to_one_file_restores_the_crop(page, server_url, tmp_path):
    page.goto(server_url + "/")
    files = _exam_files(tmp_path)
    page.set_input_files("#file", files)
    page.wait_for_selector("#views-panel", state="visible", timeout=10_000)
    page.set_input_files("#file", files[:1])
    page.wait_for_selector("#crop-canvas", state="visible", timeout=20_000)
    assert page.is_hidden("#views-panel") and page.locator("#views-list select").count() == 0
    assert page.is_enabled("#heatmap")
    page.screenshot(path=str(tmp_path / "one-file-again.png"), full_page=True)
    assert not page.problems, page.problems
