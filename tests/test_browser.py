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
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")

from conftest import run_until_closed

from mammo.webapp import create_app, make_server  # noqa: E402
from mammo.webapp.demo import fit_demo_model  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGE = DATA / "dphi-sprint31" / "train" / "Image_1.jpg"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    path = tmp_path_factory.getbasetemp() / "webapp_model" / "demo.joblib"
    if not path.exists():
        fit_demo_model(path, n=24, seed=0)
    app = create_app({"MAMMO_MODEL": str(path)})
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
        page.mouse.move(box["x"] + (frm[0] + f * (to[0] - frm[0])) * box["width"],
                        box["y"] + (frm[1] + f * (to[1] - frm[1])) * box["height"])
    page.mouse.up()


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
    with page.expect_navigation(timeout=60_000):
        page.click("#submit")
    page.wait_for_selector("#density-label", timeout=60_000)
    shot = tmp_path / "result.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshots: {tmp_path / 'upload.png'} {shot}")

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
    assert page.eval_on_selector("#crop-canvas", "el => [el.dataset.originalWidth, el.dataset.originalHeight]") == ["224", "224"]
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
