"""Flask test-client tests of the web app: every route, every refused input, start-up errors."""

from __future__ import annotations

import base64
import io
import re
import threading
import urllib.request
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask_wtf", reason="Flask-WTF is needed for the web app's CSRF protection")

from mammo.classifiers import load_model  # noqa: E402
from mammo.testing import (  # noqa: E402
    run_until_closed,
    synthetic_mammogram,  # noqa: E402
    write_dicom,
)
from mammo.webapp import ModelLoadError, create_app, make_server, serve  # noqa: E402
from mammo.webapp.__main__ import main as cli_main  # noqa: E402
from mammo.webapp.demo import fit_demo_model  # noqa: E402
from mammo.webapp.inference import (  # noqa: E402
    Crop,
    UploadError,
    apply_crop,
    heatmap_overlay,
    occlusion_map,
    parse_crop,
)

MAX_BYTES = 1_500_000
MAX_PIXELS = 1_000_000


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def app(texture_model_path):
    return create_app(
        {
            "MAMMO_MODEL": str(texture_model_path),
            "TESTING": True,
            "MAX_CONTENT_LENGTH": MAX_BYTES,
            "MAMMO_MAX_PIXELS": MAX_PIXELS,
        }
    )


@pytest.fixture()
def client(app):
    return app.test_client()


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def demo_image(seed: int = 1, density: int = 3, size: int = 160) -> np.ndarray:
    """A uint8 synthetic mammogram like the demo model's (``size`` tall, 0.8 x ``size`` wide)."""
    return synthetic_mammogram(
        np.random.default_rng(seed), density, shape=(size, int(size * 0.8)), film_label=False, uint8=True
    )


def mammo_png(seed: int = 1, density: int = 3, size: int = 160) -> bytes:
    return png(demo_image(seed, density, size))


def token(client) -> str:
    html = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def upload(data: bytes, name: str = "scan.png") -> tuple:
    return (io.BytesIO(data), name)


def html_post(client, data: dict):
    return client.post("/predict", data={"csrf_token": token(client), **data}, content_type="multipart/form-data")


def api_post(client, data: dict):
    return client.post("/api/predict", data=data, content_type="multipart/form-data")


def dicom_bytes(arr: np.ndarray, with_pixels: bool = True) -> bytes:
    buf = io.BytesIO()
    write_dicom(arr, buf, bits_stored=12, with_pixels=with_pixels)
    return buf.getvalue()


def decode_data_url(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# --------------------------------------------------------------------------- pages and API


def test_index_page_has_form_csrf_and_no_inline_code(client):
    resp = client.get("/")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert 'enctype="multipart/form-data"' in html and 'type="file"' in html and 'name="crop"' in html
    assert re.search(r'name="csrf_token" value="[^"]{20,}"', html)
    assert "Research tool, not a diagnosis" in html
    # CSP forbids inline code: every script is an external file, no style attributes or handlers
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert " style=" not in html and not re.search(r"\son[a-z]+=", html)


def test_static_assets_are_local(client):
    for name in ("style.css", "upload.js"):
        resp = client.get(f"/static/{name}")
        assert resp.status_code == 200 and len(resp.data) > 500
        assert b"http://" not in resp.data and b"https://" not in resp.data
    html = client.get("/").get_data(as_text=True)
    assert "http://" not in html and "https://" not in html


@pytest.mark.parametrize("path", ["/", "/healthz", "/static/style.css", "/nope", "/api/nope"])
def test_security_headers_on_every_response(client, path):
    resp = client.get(path)
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "img-src 'self' data:" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"


def test_healthz(client, texture_model_path):
    from mammo.classifiers import file_sha256

    resp = client.get("/healthz")
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "ok"
    assert body["model"]["sha256"] == file_sha256(texture_model_path)
    assert body["model"]["verified_manifest"] is True
    assert body["model"]["tasks"] == ["density", "tumour"]


def test_debug_off_by_default(app):
    assert app.debug is False and app.config["DEBUG"] is False


def test_api_predict_matches_the_model(client, texture_model_path):
    data = mammo_png(seed=5)
    resp = api_post(client, {"file": upload(data)})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    expected = load_model(texture_model_path).predict_records([data])[0]
    for task in ("density", "tumour"):
        assert body[task]["label"] == expected[task]["label"]
        assert body[task]["meaning"] == expected[task]["meaning"]
        assert body[task]["probabilities"] == pytest.approx(expected[task]["probabilities"], abs=1e-9)
    assert set(body["density"]["probabilities"]) == {"1", "2", "3", "4"}
    assert sum(body["density"]["probabilities"].values()) == pytest.approx(1.0)
    assert body["tumour"]["p_malignant"] == pytest.approx(body["tumour"]["probabilities"]["1"])
    assert 0 < body["tumour"]["threshold"] < 1
    # the density grade comes from the expected grade and the model's cut points (1-4 scale)
    d = body["density"]
    grade = sum(int(c) * p for c, p in d["probabilities"].items())
    assert d["expected_grade"] == pytest.approx(grade)
    assert len(d["cut_points"]) == 3 and d["cut_points"] == sorted(d["cut_points"])
    assert d["label"] == 1 + sum(grade > c for c in d["cut_points"])
    assert body["image"] == {"width": 128, "height": 160, "crop": None}
    assert body["model"]["pipeline_id"] == "demo-texture-svm"
    assert "not a diagnosis" in body["disclaimer"]
    assert "heatmap" not in body


@pytest.mark.parametrize(
    "crop_fields",
    [
        {"crop": "8,20,100,120"},
        {"crop": " 8, 20 ,100,120 "},
        {"crop_x": "8", "crop_y": "20", "crop_w": "100", "crop_h": "120"},
    ],
)
def test_api_predict_applies_the_crop(client, texture_model_path, crop_fields):
    raw = demo_image(7, 2)
    resp = api_post(client, {"file": upload(png(raw)), **crop_fields})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["image"]["crop"] == [8, 20, 100, 120]
    cropped = raw[20:140, 8:108].astype(np.float32) / 255
    expected = load_model(texture_model_path).predict_records([cropped])[0]
    assert body["tumour"]["p_malignant"] == pytest.approx(expected["tumour"]["p_malignant"], abs=1e-6)
    uncropped = api_post(client, {"file": upload(png(raw))}).get_json()
    assert uncropped["density"]["probabilities"] != body["density"]["probabilities"]


def test_api_predict_heatmap(client):
    resp = api_post(client, {"file": upload(mammo_png(seed=3)), "heatmap": "1"})
    assert resp.status_code == 200
    heat = resp.get_json()["heatmap"]
    drop = np.asarray(heat["drop"])
    assert heat["grid"] == 8 and drop.shape == (8, 8) and np.isfinite(drop).all()
    assert heat["baseline_p_malignant"] == pytest.approx(resp.get_json()["tumour"]["p_malignant"], abs=1e-6)


def test_api_predict_dicom_and_tiff(client):
    arr = demo_image(2, 2).astype(np.uint16) * 16  # 12-bit
    resp = api_post(client, {"file": upload(dicom_bytes(arr), "scan.dcm")})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF")
    resp = api_post(client, {"file": upload(buf.getvalue(), "scan.tif")})
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_preview_returns_thumbnail_and_original_size(app, client):
    big = demo_image(4, 1, size=900)  # 720 x 900
    for data in (png(big), dicom_bytes(big.astype(np.uint16) * 16)):
        resp = client.post("/api/preview", data={"file": upload(data)}, content_type="multipart/form-data")
        assert resp.status_code == 200
        body = resp.get_json()
        assert (body["width"], body["height"]) == (720, 900)
        thumb = decode_data_url(body["preview"])
        assert max(thumb.size) == app.config["MAMMO_PREVIEW_SIZE"]
        assert thumb.size == (body["preview_width"], body["preview_height"])
    bad = client.post("/api/preview", data={"file": upload(b"hello")}, content_type="multipart/form-data")
    assert bad.status_code == 415 and "not an image" in bad.get_json()["error"]


def test_html_predict_shows_everything(client):
    resp = html_post(client, {"file": upload(mammo_png(seed=9)), "crop": "4,10,110,140", "heatmap": "1"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200, html
    assert 'id="density-label"' in html and 'id="p-malignant"' in html and 'id="threshold"' in html
    assert 'id="expected-grade"' in html and 'id="cut-points"' in html and "Most likely" not in html
    images = re.findall(r'<img src="(data:image/png;base64,[^"]+)"', html)
    assert len(images) == 3  # original, enhanced, heatmap
    original, enhanced, heat = (decode_data_url(u) for u in images)
    assert original.size == (128, 160) and original.mode == "RGB"  # crop box drawn in colour
    assert heat.mode == "RGB" and enhanced.mode == "L"
    for meaning in ("almost entirely fatty", "extremely dense"):
        assert meaning in html
    # the model's provenance is a short summary with a link to its card, not its metadata flattened
    assert "demo-texture-svm" in html and "glcm, lbp" in html and 'href="/model-card"' in html
    assert "cv_metrics" not in html and "training_data." not in html
    assert "Research tool, not a diagnosis" in html
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [] and " style=" not in html
    assert resp.headers["Cache-Control"] == "no-store"


def test_result_page_tolerates_missing_metadata(app, client, monkeypatch):
    model = app.extensions["mammo"]["model"]
    monkeypatch.setattr(model, "metadata", {})
    resp = html_post(client, {"file": upload(mammo_png(seed=2))})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200, html
    assert 'id="density-label"' in html and 'id="threshold">0.500<' in html
    assert client.get("/healthz").get_json()["model"]["pipeline_id"] is None


def test_html_predict_requires_csrf_token(client):
    resp = client.post("/predict", data={"file": upload(mammo_png())}, content_type="multipart/form-data")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400 and "security token" in html and "Traceback" not in html
    bad = client.post(
        "/predict", data={"file": upload(mammo_png()), "csrf_token": "forged"}, content_type="multipart/form-data"
    )
    assert bad.status_code == 400 and "security token" in bad.get_data(as_text=True)


# --------------------------------------------------------------------------- bad input


def truncated_png() -> bytes:
    data = png(np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8))
    return data[: len(data) // 2]


BAD_UPLOADS = {
    "empty upload": ({"file": upload(b"")}, 400, "empty"),
    "no file selected": ({"file": upload(b"", "")}, 400, "No file was selected"),
    "no file field": ({"other": "x"}, 400, "No file in the request"),
    "non-image": ({"file": upload(b"%PDF-1.4 not an image at all" * 10)}, 415, "not an image"),
    "truncated image": ({"file": upload(truncated_png())}, 400, "truncated"),
    "pixel count over limit": ({"file": upload(png(np.zeros((1001, 1000), np.uint8)))}, 413, "too many pixels"),
    "too small": ({"file": upload(png(np.zeros((8, 8), np.uint8)))}, 422, "shape"),
    "crop not numbers": ({"file": upload(mammo_png()), "crop": "a,b,c,d"}, 400, "Bad crop box"),
    "crop three values": ({"file": upload(mammo_png()), "crop": "1,2,30"}, 400, "Bad crop box"),
    "crop negative": ({"file": upload(mammo_png()), "crop": "-1,0,40,40"}, 400, "Bad crop box"),
    "crop float": ({"file": upload(mammo_png()), "crop": "1.5,0,40,40"}, 400, "Bad crop box"),
    "crop too small": ({"file": upload(mammo_png()), "crop": "0,0,40,5"}, 400, "at least 16"),
    "crop outside image": ({"file": upload(mammo_png()), "crop": "100,0,40,40"}, 400, "does not fit"),
    "crop fields partial": ({"file": upload(mammo_png()), "crop_x": "1", "crop_y": "2"}, 400, "must all be given"),
    "crop both forms": ({"file": upload(mammo_png()), "crop": "0,0,20,20", "crop_x": "0"}, 400, "not both"),
    "crop absurd aspect": ({"file": upload(mammo_png(size=400)), "crop": "0,0,16,400"}, 422, "could not be analysed"),
}


def unsupported_dicom() -> bytes:
    return dicom_bytes(np.zeros((32, 32), np.uint16), with_pixels=False)


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS) + ["unsupported DICOM", "body over MAX_CONTENT_LENGTH"])
@pytest.mark.parametrize("kind", ["api", "html"])
def test_bad_input_gives_clear_4xx(client, case, kind):
    if case == "unsupported DICOM":
        data, status, text = {"file": upload(unsupported_dicom(), "x.dcm")}, 415, "DICOM"
    elif case == "body over MAX_CONTENT_LENGTH":
        data, status, text = {"file": upload(b"\0" * (MAX_BYTES + 10))}, 413, "larger than the limit"
    else:
        data, status, text = BAD_UPLOADS[case]
        data = {k: (io.BytesIO(v[0].getvalue()), v[1]) if isinstance(v, tuple) else v for k, v in data.items()}
    resp = api_post(client, data) if kind == "api" else html_post(client, data)
    body = resp.get_data(as_text=True)
    assert resp.status_code == status, body
    assert "Traceback" not in body and "scan.png" not in body
    if kind == "api":
        assert resp.is_json and text in resp.get_json()["error"] and resp.get_json()["status"] == status
    else:
        assert resp.mimetype == "text/html" and text in body and 'id="error"' in body


@pytest.mark.parametrize(
    "method, path, json_expected",
    [
        ("GET", "/predict", False),
        ("GET", "/api/predict", True),
        ("GET", "/api/preview", True),
        ("POST", "/healthz", True),
        ("PUT", "/", False),
        ("DELETE", "/api/predict", True),
    ],
)
def test_wrong_method_gives_405(client, method, path, json_expected):
    resp = client.open(path, method=method)
    assert resp.status_code == 405
    assert "POST" in resp.headers["Allow"] or "GET" in resp.headers["Allow"]
    assert resp.is_json == json_expected
    assert "Method Not Allowed" in resp.get_data(as_text=True)


def test_not_found(client):
    assert client.get("/api/nothing").status_code == 404 and client.get("/api/nothing").is_json
    page = client.get("/nothing")
    assert page.status_code == 404 and page.mimetype == "text/html"


def test_internal_error_is_plain_500(app, client, monkeypatch):
    model = app.extensions["mammo"]["model"]

    def boom(*a, **k):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(model, "predict_records", boom)
    monkeypatch.setattr(model, "analyse", boom)  # the HTML page predicts and enhances in one call
    for resp in (api_post(client, {"file": upload(mammo_png())}), html_post(client, {"file": upload(mammo_png())})):
        body = resp.get_data(as_text=True)
        assert resp.status_code == 500
        assert "Internal error" in body and "secret internal detail" not in body and "Traceback" not in body


def test_uploads_stay_in_memory_and_out_of_logs(client, monkeypatch, caplog):
    import tempfile

    import werkzeug.formparser

    def no_disk(*a, **k):
        raise AssertionError("an upload was about to be written to a temporary file")

    for mod in (tempfile, werkzeug.formparser):
        for name in ("TemporaryFile", "SpooledTemporaryFile", "NamedTemporaryFile"):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, no_disk)
    big = png(np.random.default_rng(0).integers(0, 256, (900, 900), dtype=np.uint8))  # > 500 KB spool size
    assert len(big) > 600_000
    caplog.set_level("DEBUG")
    resp = api_post(client, {"file": upload(big, "patient-jane-doe.png")})
    # read in memory, then refused by the input-quality gate: noise is not a mammogram
    assert resp.status_code == 422 and "cannot be judged" in resp.get_json()["error"], resp.get_data(as_text=True)
    assert "patient-jane-doe" not in caplog.text and "patient-jane-doe" not in resp.get_data(as_text=True)


# --------------------------------------------------------------------------- units


def test_parse_crop_and_apply_crop():
    assert parse_crop({}) is None and parse_crop({"crop": "  "}) is None
    assert parse_crop({"crop": "1,2,30,40"}) == Crop(1, 2, 30, 40)
    from mammo.features.io import Scan

    pixels = np.arange(100 * 80, dtype=np.float32).reshape(100, 80)
    img = Scan(pixels, polarity_known=True, tags={"ViewPosition": "CC"})
    out = apply_crop(img, Crop(10, 20, 30, 40))
    assert out.shape == (40, 30) and out.pixels[0, 0] == pixels[20, 10] and out.pixels.flags.c_contiguous
    assert out.polarity_known and out.tags == img.tags  # what the header said stays with the crop
    assert apply_crop(img, Crop(50, 60, 30, 40)).shape == (40, 30)  # touching the edges is fine
    with pytest.raises(UploadError, match="does not fit"):
        apply_crop(img, Crop(51, 60, 30, 40))


class _FakeModel:
    """P(malignant) = contrast inside the top-left cell of an 8x8 grid: only that cell should matter."""

    def __init__(self):
        self.batches = []

    def predict_proba(self, images):
        self.batches.append(len(images))
        images = [np.asarray(im) for im in images]  # Scans (they keep a DICOM's polarity) or arrays
        p = np.array([float(np.std(im[: im.shape[0] // 8, : im.shape[1] // 8])) for im in images])
        return {"tumour": np.column_stack([1 - p, p])}


def test_occlusion_map_finds_the_cell_that_drives_the_score():
    rng = np.random.default_rng(0)
    img = rng.random((160, 128)).astype(np.float32)
    fake = _FakeModel()
    occ = occlusion_map(fake, img, grid=8, max_side=512)
    drop = occ["drop"]
    assert drop.shape == (8, 8) and occ["baseline"] == pytest.approx(np.std(img[:20, :16]), rel=1e-5)
    assert drop[0, 0] == pytest.approx(occ["baseline"], rel=1e-5)  # flattening the cell removes all contrast
    assert np.abs(np.delete(drop.ravel(), 0)).max() < 1e-6
    assert sum(fake.batches) == 65 and len(fake.batches) == 2  # 1 + 64 images, in few calls
    overlay = np.asarray(heatmap_overlay(img, occ, 512))
    assert overlay.shape == (160, 128, 3)
    red_cell, other = overlay[:20, :16].astype(int), overlay[40:60, 40:60].astype(int)
    assert (red_cell[..., 0] - red_cell[..., 2]).mean() > 50 and abs((other[..., 0] - other[..., 2]).mean()) < 2


def test_occlusion_map_segments_the_image_once(texture_model_path, monkeypatch):
    """Every occluded copy keeps the breast region of the image itself: one segmentation
    (not one per copy), and the baseline is the model's own prediction."""
    import mammo.features.region as region

    model = load_model(texture_model_path)
    img = demo_image(seed=4, size=224).astype(np.float32) / 255
    calls = []
    segment = region.segment_breast
    monkeypatch.setattr(region, "segment_breast", lambda *a, **k: calls.append(1) or segment(*a, **k))
    occ = occlusion_map(model, img, grid=4)
    assert occ["n_run"] > 4 and len(calls) == 1
    assert occ["baseline"] == pytest.approx(model.predict_proba([img])["tumour"][0, 1], abs=1e-6)


def test_occlusion_map_skips_flat_background_cells():
    img = np.zeros((160, 128), np.float32)
    img[:, :64] = np.random.default_rng(2).random((160, 64))  # left half textured, right half black
    fake = _FakeModel()
    occ = occlusion_map(fake, img, grid=8)
    assert occ["n_run"] == 32 and sum(fake.batches) == 33
    assert np.all(occ["drop"][:, 4:] == 0) and occ["drop"][0, 0] > 0.1


def test_occlusion_map_shrinks_large_images():
    fake = _FakeModel()
    occ = occlusion_map(fake, np.random.default_rng(1).random((1000, 800)).astype(np.float32), grid=4, max_side=200)
    assert occ["shape"] == (200, 160) and occ["drop"].shape == (4, 4)


# --------------------------------------------------------------------------- start-up, serving, CLI


def test_model_from_environment_variable(texture_model_path, monkeypatch):
    monkeypatch.setenv("MAMMO_MODEL", str(texture_model_path))
    app = create_app({"MAMMO_WARMUP": False})
    assert app.test_client().get("/healthz").get_json()["model"]["file"] == texture_model_path.name


def test_startup_errors_are_clear(tmp_path, texture_model_path, monkeypatch):
    monkeypatch.delenv("MAMMO_MODEL", raising=False)
    with pytest.raises(ModelLoadError, match="No model configured"):
        create_app()
    with pytest.raises(ModelLoadError, match="not found"):
        create_app({"MAMMO_MODEL": str(tmp_path / "missing.joblib")})
    joblib.dump({"not": "a model"}, tmp_path / "dict.joblib")
    with pytest.raises(ModelLoadError, match="Not a mammo model"):
        create_app({"MAMMO_MODEL": str(tmp_path / "dict.joblib")})
    (tmp_path / "junk.joblib").write_bytes(b"this is not a pickle")
    with pytest.raises(ModelLoadError, match="Could not load"):
        create_app({"MAMMO_MODEL": str(tmp_path / "junk.joblib")})
    # A model whose bytes no longer match its manifest is refused before unpickling.
    tampered = tmp_path / "tampered.joblib"
    tampered.write_bytes(texture_model_path.read_bytes() + b"\0")
    (tmp_path / "tampered.joblib.manifest.json").write_text(
        Path(str(texture_model_path) + ".manifest.json").read_text()
    )
    with pytest.raises(ModelLoadError, match="integrity"):
        create_app({"MAMMO_MODEL": str(tampered)})


def test_waitress_server_serves_the_app(app):
    server = make_server(app, "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=run_until_closed, args=(server,), daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.effective_port}"
        with urllib.request.urlopen(base + "/healthz", timeout=10) as resp:
            assert resp.status == 200 and b'"status":"ok"' in resp.read()
        requests = pytest.importorskip("requests")
        ok = requests.post(base + "/api/predict", files={"file": ("a.png", mammo_png())}, timeout=60)
        assert ok.status_code == 200 and "tumour" in ok.json()
        # Just over MAX_CONTENT_LENGTH: the app's JSON 413; far over it: waitress refuses the body itself.
        for size in (MAX_BYTES + 1000, MAX_BYTES + (3 << 20)):
            resp = requests.post(base + "/api/predict", files={"file": ("a.png", b"\0" * size)}, timeout=60)
            assert resp.status_code == 413, size
        assert (
            "larger than the limit"
            in requests.post(
                base + "/api/predict", files={"file": ("a.png", b"\0" * (MAX_BYTES + 1000))}, timeout=60
            ).json()["error"]
        )
    finally:
        server.close()
        thread.join(5)


def test_serve_prints_the_address(texture_model_path, monkeypatch, capsys):
    import mammo.webapp as webapp

    real = webapp.make_server
    seen = {}

    def fake_make_server(app, host, port, threads):
        server = real(app, host, port, threads)
        seen["port"] = server.effective_port

        def run():
            raise KeyboardInterrupt

        server.run = run
        return server

    monkeypatch.setattr(webapp, "make_server", fake_make_server)
    serve(texture_model_path, host="127.0.0.1", port=0, threads=1)
    assert f"http://127.0.0.1:{seen['port']}/" in capsys.readouterr().out


def test_cli_help_and_missing_model(capsys, tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as exc:
        cli_main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--model" in out and "--port" in out and "/api/predict" in out
    monkeypatch.delenv("MAMMO_MODEL", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli_main([])
    assert exc.value.code == 2 and "no model given" in capsys.readouterr().err
    with pytest.raises(ModelLoadError, match="Model file not found"):  # mammo.cli turns it into one line, exit 2
        cli_main(["--model", str(tmp_path / "missing.joblib")])
    from mammo.cli import run

    assert run("serve", ["--model", str(tmp_path / "missing.joblib")]) == 2
    assert capsys.readouterr().err.startswith("mammo serve: error: Model file not found")


# --------------------------------------------------------------------------- real CNN pipeline


CNN_WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


@pytest.mark.slow
def test_cnn_model_predicts_with_heatmap(tmp_path_factory):
    """A CNN model's heatmap responds to occlusion (its latency is benchmarks/bench_webapp.py's)."""
    from mammo.storage import keras_home as _keras_home

    keras_home = _keras_home()
    if not (keras_home / "models" / CNN_WEIGHTS).is_file():
        pytest.skip(f"MobileNetV2 weights not in {keras_home}/models (set KERAS_HOME)")
    path = fit_demo_model(tmp_path_factory.mktemp("cnn") / "cnn.joblib", n=16, feature_set="cnn")
    client = create_app({"MAMMO_MODEL": str(path), "TESTING": True}).test_client()
    img = png(demo_image(11, 3, size=224))
    resp = api_post(client, {"file": upload(img), "heatmap": "1"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert np.asarray(body["heatmap"]["drop"]).shape == (8, 8)
    assert np.abs(np.asarray(body["heatmap"]["drop"])).max() > 0  # the CNN sees the occlusions


def test_enhanced_view_of_a_model_trained_without_enhancement(tmp_path, mammogram):
    from mammo.classifiers import MammogramModel, make_task_pipeline
    from mammo.features.enhance import enhance

    images = [mammogram(density=1 + i % 4) for i in range(16)]
    model = MammogramModel({t: make_task_pipeline(t, "texture", "svm", enhance=False) for t in ("density", "tumour")})
    model.fit(images, density=[1 + i % 4 for i in range(16)], tumour=[i % 2 for i in range(16)])
    path = model.save(tmp_path / "plain.joblib")
    app = create_app({"MAMMO_MODEL": str(path), "TESTING": True})
    client = app.test_client()
    resp = html_post(client, {"file": upload(mammo_png(seed=3))})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    shown = np.asarray(
        decode_data_url(re.findall(r'<img src="(data:image/png;base64,[^"]+)"', resp.get_data(as_text=True))[1])
    )
    _, prepared = model.analyse([mammo_png(seed=3)])
    plain, enhanced = prepared[0].pixels, enhance(prepared[0].pixels, prepared[0].mask)

    # the page shows the CLAHE + unsharp view, not the unenhanced crop the model used
    def gap(a):
        a = np.asarray(Image.fromarray((a * 255).astype(np.uint8)).resize(shown.shape[::-1]), dtype=float)
        return np.abs(a - shown).mean()

    assert gap(enhanced) < gap(plain)


def test_page_draws_the_breast_outline_and_the_api_reports_ood(client):
    resp = html_post(client, {"file": upload(mammo_png(seed=4))})
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "The breast as the model found it" in html
    # the original is drawn in colour now: the outline's cyan pixels are in it
    import base64
    import re

    src = re.search(r'<img src="data:image/png;base64,([^"]+)" alt="The uploaded mammogram', html).group(1)
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(src))).convert("RGB")).astype(int)
    cyan = (shown[..., 2] > 200) & (shown[..., 1] > 180) & (shown[..., 0] < 60)
    assert cyan.sum() > 50
    body = api_post(client, {"file": upload(mammo_png(seed=4))}).get_json()
    assert (
        isinstance(body["ood_score"], float) and isinstance(body["in_distribution"], bool) and body["ood_threshold"] > 0
    )


def test_out_of_distribution_warning_on_the_page(client):
    from mammo.testing import non_mammograms

    # the gate lets this drawing through; the out-of-distribution score must not
    img = (non_mammograms()["radial gradient"] * 255).astype(np.uint8)
    body = api_post(client, {"file": upload(png(img))}).get_json()
    assert body["in_distribution"] is False
    html = html_post(client, {"file": upload(png(img))}).get_data(as_text=True)
    assert 'id="ood-warning"' in html and "do not trust the predictions" in html
    # the warning follows the score: shown exactly when the image is out of distribution
    for seed in (5, 6):
        flag = api_post(client, {"file": upload(mammo_png(seed=seed))}).get_json()["in_distribution"]
        shown = 'id="ood-warning"' in html_post(client, {"file": upload(mammo_png(seed=seed))}).get_data(as_text=True)
        assert shown == (not flag)


@pytest.mark.parametrize("name", ["black", "uniform noise", "astronaut", "document"])
def test_non_mammograms_get_422_with_a_plain_message(client, name):
    from mammo.testing import non_mammograms

    img = non_mammograms()[name]
    img = (img * 255).astype(np.uint8) if img.dtype.kind == "f" else img.astype(np.uint8)
    resp = api_post(client, {"file": upload(png(img))})
    assert resp.status_code == 422 and "cannot be judged" in resp.get_json()["error"]
    page = html_post(client, {"file": upload(png(img))})
    assert page.status_code == 422 and "cannot be judged" in page.get_data(as_text=True)
    assert "Traceback" not in page.get_data(as_text=True)


# --------------------------------------------------------------------------- one exam at a time (issue 17)

from mammo.exams import aggregate, describe_view  # noqa: E402
from mammo.features.io import read_scan  # noqa: E402

EXAM_VIEWS = [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
STUDY = "1.2.826.0.1.3680043.2.1143.17"
SINGLE_KEYS = {
    "density",
    "tumour",
    "ood_score",
    "in_distribution",
    "ood_threshold",
    "image",
    "model",
    "seconds",
    "disclaimer",
}


def exam_dicoms(study: str | None = STUDY, patient: str | None = "P-017", seeds=(21, 22, 23, 24)) -> list[tuple]:
    """Four synthetic DICOM views of one exam, told apart only by their tags (the names say nothing)."""
    files = []
    for k, ((side, view), seed) in enumerate(zip(EXAM_VIEWS, seeds)):
        tags = {"ImageLaterality": side, "ViewPosition": view}
        tags.update({"StudyInstanceUID": study} if study else {}, **({"PatientID": patient} if patient else {}))
        buf = io.BytesIO()
        write_dicom(demo_image(seed, 1 + k).astype(np.uint16) * 16, buf, bits_stored=12, **tags)
        files.append((f"image{k + 1}.dcm", buf.getvalue()))
    return files


def exam_pngs(
    names=("P7_L_CC.png", "P7_L_MLO.png", "P7_R_CC.png", "P7_R_MLO.png"), seeds=(31, 32, 33, 34)
) -> list[tuple]:
    return [(name, mammo_png(seed, 1 + k % 4)) for k, (name, seed) in enumerate(zip(names, seeds))]


def exam_post(client, files: list[tuple], fields: dict | None = None, kind: str = "api"):
    data = {"file": [upload(d, name) for name, d in files], **(fields or {})}
    return api_post(client, data) if kind == "api" else html_post(client, data)


def views_of(body: dict) -> list:
    """The API's views as mammo.exams Views, under one exam name."""
    return [
        describe_view(v["name"], laterality=v["laterality"], view=v["view"], exam=body["exam"]["id"])
        for v in body["views"]
    ]


def check_aggregation(body: dict, threshold: float) -> None:
    """breasts and exam of the answer == mammo.exams.aggregate of its own per-view records."""
    records = [v["error"] if "error" in v else v for v in body["views"]]
    (want,) = aggregate(views_of(body), records)
    d = want.to_dict()
    for b in d["breasts"]:
        b.pop("exam")
    assert [{k: v for k, v in b.items() if k != "flagged"} for b in body["breasts"]] == d["breasts"]
    assert [b["flagged"] for b in body["breasts"]] == [b["p_malignant"] >= threshold for b in d["breasts"]]
    exam = body["exam"]
    assert (exam["density"], exam["in_distribution"], exam["refused"], exam["images"]) == (
        d["density"],
        d["in_distribution"],
        d["refused"],
        d["images"],
    )
    assert exam["n_scored"] == len(body["views"]) - len(d["refused"]) and exam["threshold"] == threshold


def check_records(body: dict, model_path: Path, files: list[tuple]) -> None:
    """Each scored view's keys and numbers are those of the same file scored alone.

    To float32 rounding: the model's features of a batch differ from those of one image in
    the last bits (``predict_records`` of the four files together does the same).
    """
    model = load_model(model_path)
    for view, (_name, data) in zip(body["views"], files):
        if "error" in view:
            continue
        alone = model.predict_records([data])[0]
        assert set(view) == {"name", "laterality", "view", "view_source"} | set(alone) | {"image"}
        assert view["density"]["label"] == alone["density"]["label"]
        assert view["density"]["probabilities"] == pytest.approx(alone["density"]["probabilities"], abs=1e-6)
        assert view["tumour"]["p_malignant"] == pytest.approx(alone["tumour"]["p_malignant"], abs=1e-6)
        assert view["in_distribution"] == alone["in_distribution"]
        scan = read_scan(data)
        assert view["image"] == {"width": scan.shape[1], "height": scan.shape[0], "crop": None}


def test_api_exam_of_four_dicom_views_told_apart_by_their_tags(app, client, texture_model_path):
    files = exam_dicoms()
    resp = exam_post(client, files)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"views", "breasts", "exam", "model", "seconds", "disclaimer"}
    assert [(v["laterality"], v["view"], v["view_source"]) for v in body["views"]] == [
        (s, p, "dicom") for s, p in EXAM_VIEWS
    ]
    for v, (name, data) in zip(body["views"], files):  # the same View as describe_view gives on the file's own tags
        own = describe_view(name, read_scan(data).tags)
        assert (v["name"], v["laterality"], v["view"], v["view_source"]) == (
            own.name,
            own.laterality,
            own.view,
            own.source,
        )
    assert body["exam"]["id"] == STUDY and body["exam"]["refused"] == {}
    left, right = body["breasts"]
    assert (left["laterality"], left["views"], left["n_views"]) == ("L", ["CC", "MLO"], 2)
    assert (right["laterality"], right["images"]) == ("R", ["image3.dcm", "image4.dcm"])
    p = [v["tumour"]["p_malignant"] for v in body["views"]]
    assert left["p_malignant"] == pytest.approx((p[0] + p[1]) / 2) and right["p_malignant"] == pytest.approx(
        (p[2] + p[3]) / 2
    )
    grades = sorted(v["density"]["label"] for v in body["views"])
    assert body["exam"]["density"] == grades[2]  # four views: the denser of the two middle grades
    meanings = load_model(texture_model_path).metadata["tasks"]["density"]["class_meanings"]
    assert body["exam"]["density_meaning"] == meanings[str(grades[2])]
    assert set(body["exam"]["rules"]) >= {"breast_p_malignant", "exam_density", "flagged", "refused"}
    assert "AUC per breast" in body["exam"]["rules"]["breast_p_malignant"]
    assert body["model"]["pipeline_id"] == "demo-texture-svm" and "not a diagnosis" in body["disclaimer"]
    threshold = app.extensions["mammo"]["model"].threshold
    check_aggregation(body, threshold)
    check_records(body, texture_model_path, files)


def test_a_breast_is_flagged_when_its_mean_reaches_the_threshold(app, client, monkeypatch):
    body = exam_post(client, exam_dicoms()).get_json()
    low, high = sorted(b["p_malignant"] for b in body["breasts"])
    model = app.extensions["mammo"]["model"]
    tasks = {**model.metadata.get("tasks", {})}
    tasks["tumour"] = {**tasks.get("tumour", {}), "threshold": (low + high) / 2}
    monkeypatch.setattr(model, "metadata", {**model.metadata, "tasks": tasks})
    body = exam_post(client, exam_dicoms()).get_json()
    assert [b["flagged"] for b in body["breasts"]] == [b["p_malignant"] == high for b in body["breasts"]]
    assert body["exam"]["threshold"] == (low + high) / 2
    check_aggregation(body, (low + high) / 2)
    html = exam_post(client, exam_dicoms(), kind="html").get_data(as_text=True)
    assert html.count('<tr class="breast flagged"') == 1


def test_api_exam_of_pngs_by_file_name_and_by_form_fields(app, client, texture_model_path):
    threshold = app.extensions["mammo"]["model"].threshold
    files = exam_pngs()
    body = exam_post(client, files).get_json()
    assert [(v["laterality"], v["view"], v["view_source"]) for v in body["views"]] == [
        (s, p, "filename") for s, p in EXAM_VIEWS
    ]
    assert body["exam"]["id"] == "P7" and [b["laterality"] for b in body["breasts"]] == ["L", "R"]
    check_aggregation(body, threshold)
    check_records(body, texture_model_path, files)
    # names that say nothing: the form's fields (any case, empty = not given); a file name's word loses to them
    files = exam_pngs(("a.png", "b.png", "P7_L_CC.png", "same.png", "same.png"), seeds=(31, 32, 33, 34, 35))
    fields = {"laterality": ["L", "left", "R", "", ""], "view": ["CC", "mlo", "MLO", "", ""]}
    resp = exam_post(client, files, fields)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert [(v["name"], v["laterality"], v["view"], v["view_source"]) for v in body["views"]] == [
        ("a.png", "L", "CC", "given"),
        ("b.png", "L", "MLO", "given"),
        ("P7_L_CC.png", "R", "MLO", "given"),
        ("same.png", None, None, "unknown"),
        ("same.png (2)", None, None, "unknown"),
    ]
    assert body["exam"]["id"] == "exam"  # the names disagree: still one upload, one exam
    # an image of unknown side is a breast of its own, never averaged with another
    assert [(b["laterality"], b["images"]) for b in body["breasts"]] == [
        ("L", ["a.png", "b.png"]),
        ("R", ["P7_L_CC.png"]),
        (None, ["same.png"]),
        (None, ["same.png (2)"]),
    ]
    check_aggregation(body, threshold)
    check_records(body, texture_model_path, files)


def test_exam_scores_in_one_model_call_under_one_slot(app, client, monkeypatch):
    model = app.extensions["mammo"]["model"]
    real, calls = model.analyse, []

    def counting(images):
        calls.append(len(images))
        return real(images)

    class Slots:
        def __init__(self, inner):
            self.inner, self.taken = inner, 0

        def __enter__(self):
            self.taken += 1
            return self.inner.__enter__()

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

    slots = Slots(app.extensions["mammo"]["slots"])
    monkeypatch.setattr(model, "analyse", counting)
    monkeypatch.setitem(app.extensions["mammo"], "slots", slots)
    assert exam_post(client, exam_pngs()).status_code == 200
    assert calls == [4] and slots.taken == 1
    # a refused image stops a batch: then one call per image, still under the one slot
    calls.clear()
    files = exam_pngs()[:3] + [("black.png", png(np.zeros((160, 128), np.uint8)))]
    assert exam_post(client, files).status_code == 200
    assert calls == [4, 1, 1, 1, 1] and slots.taken == 2


def test_a_refused_file_does_not_sink_the_exam(app, client, texture_model_path):
    files = exam_pngs()[:2] + [
        ("P7_R_CC.png", b"%PDF-1.4 not an image" * 10),
        ("P7_R_MLO.png", png(np.zeros((160, 128), np.uint8))),
    ]
    resp = exam_post(client, files)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    bad, blank = body["views"][2:]
    # each refused view says what a single upload of the file answers
    for view, (name, data) in zip((bad, blank), files[2:]):
        alone = api_post(client, {"file": upload(data, name)})
        assert (view["status"], view["error"]) == (alone.status_code, alone.get_json()["error"])
        assert "tumour" not in view and view["laterality"] == "R"
    assert bad["status"] == 415 and blank["status"] == 422 and "cannot be judged" in blank["error"]
    assert body["exam"]["refused"] == {"P7_R_CC.png": bad["error"], "P7_R_MLO.png": blank["error"]}
    assert body["exam"]["n_scored"] == 2 and [b["laterality"] for b in body["breasts"]] == ["L"]
    check_aggregation(body, app.extensions["mammo"]["model"].threshold)
    check_records(body, texture_model_path, files)
    page = exam_post(client, files, kind="html")
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html
    assert html.count('class="view-card refused"') == 2 and "Not analysed: This image cannot be judged" in html
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 3  # the blank one is shown, the PDF cannot be


@pytest.mark.parametrize("kind", ["api", "html"])
def test_an_exam_with_every_file_refused_is_422(client, kind):
    files = [("a.png", b"not an image at all" * 10), ("b.png", png(np.zeros((160, 128), np.uint8)))]
    resp = exam_post(client, files, kind=kind)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422, text
    assert "None of the 2 files could be analysed" in text and "file 2: This image cannot be judged" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("kind", ["api", "html"])
@pytest.mark.parametrize("study, patients, n", [(None, ["P1", "P1", "P2", "P2"], 2), ("per file", ["P1"] * 4, 4)])
def test_files_of_different_exams_are_refused(app, client, monkeypatch, kind, study, patients, n):
    files = []
    for k, patient in enumerate(patients):
        ((name, data),) = exam_dicoms(study=f"1.2.3.{k}" if study else None, patient=patient, seeds=(40 + k,))[:1]
        files.append((f"x{k}.dcm", data))
    monkeypatch.setattr(app.extensions["mammo"]["model"], "analyse", lambda *a: pytest.fail("an image was scored"))
    resp = exam_post(client, files, kind=kind)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422, text
    assert f"These files belong to {n} different exams" in text and "upload one exam at a time" in text


@pytest.mark.parametrize("kind", ["api", "html"])
def test_more_than_eight_files_are_refused_before_any_is_read(client, monkeypatch, kind):
    import mammo.webapp.exam as exam_module

    monkeypatch.setattr(exam_module, "read_upload", lambda *a, **k: pytest.fail("a file was read"))
    resp = exam_post(client, exam_pngs(tuple(f"v{k}.png" for k in range(9)), seeds=range(9)), kind=kind)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 400 and "at most 8 images of one exam" in text and "has 9" in text


def test_eight_files_are_one_exam(client):
    names = tuple(f"P8_{s}_{v}.png" for s in "LR" for v in ("CC", "MLO", "ML", "XCCL"))
    body = exam_post(client, exam_pngs(names, seeds=range(50, 58))).get_json()
    assert len(body["views"]) == 8 and [b["n_views"] for b in body["breasts"]] == [4, 4]


EXAM_REFUSALS = {
    "crop box": ({"crop": "0,0,40,40"}, "crop box applies to a single image"),
    "crop field": ({"crop_x": "3"}, "crop box applies to a single image"),
    "heatmap": ({"heatmap": "1"}, "heatmap is made for a single image"),
    "laterality not per file": ({"laterality": ["L", "R"]}, "one 'laterality' field per file"),
    "view not per file": ({"view": ["CC", "", "", "", "MLO"]}, "one 'view' field per file"),
    "bad laterality": ({"laterality": ["L", "middle", "", ""]}, "Bad laterality for file 2"),
    "bad view": ({"view": ["CC", "MLO", "CC", "top"]}, "Bad view for file 4"),
}


@pytest.mark.parametrize("kind", ["api", "html"])
@pytest.mark.parametrize("case", sorted(EXAM_REFUSALS))
def test_exam_requests_that_cannot_be_honoured_are_400(client, kind, case):
    from html import unescape

    fields, text = EXAM_REFUSALS[case]
    resp = exam_post(client, exam_pngs(), fields, kind=kind)
    body = unescape(resp.get_data(as_text=True))
    assert resp.status_code == 400, body
    assert text in body and "Traceback" not in body and "P7_L_CC" not in body


def test_exam_pixel_limit(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "MAMMO_MAX_EXAM_PIXELS", 3 * 160 * 128 - 1)  # three of the four views fit
    resp = exam_post(client, exam_pngs())
    assert resp.status_code == 413 and "too many pixels in all" in resp.get_json()["error"]
    monkeypatch.setitem(app.config, "MAMMO_MAX_EXAM_PIXELS", None)  # default: twice MAMMO_MAX_PIXELS
    assert exam_post(client, exam_pngs()).status_code == 200


def test_a_single_file_keeps_the_single_image_answer(client):
    data = mammo_png(seed=5)
    plain = api_post(client, {"file": upload(data)}).get_json()
    assert set(plain) == SINGLE_KEYS
    # the exam's per-file fields do not turn one file into an exam
    with_fields = api_post(client, {"file": upload(data, "P1_L_CC.png"), "laterality": "R", "view": "MLO"}).get_json()
    assert set(with_fields) == SINGLE_KEYS
    assert with_fields["tumour"] == plain["tumour"] and with_fields["density"] == plain["density"]
    html = html_post(client, {"file": upload(data), "laterality": "R"}).get_data(as_text=True)
    assert 'id="density-label"' in html and 'class="view-card' not in html


def test_exam_page_shows_each_view_the_breasts_and_the_exam_density(client):
    files = exam_dicoms()
    body = exam_post(client, files).get_json()
    resp = exam_post(client, files, kind="html")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200, html
    cards = re.findall(r'<article class="view-card" id="view-(\d)"', html)
    assert cards == ["1", "2", "3", "4"]
    for view in body["views"]:
        assert f"{view['tumour']['p_malignant']:.3f}" in html and view["density"]["meaning"] in html
    for title in (
        "Left breast,\n        CC",
        "Left breast,\n        MLO",
        "Right breast,\n        CC",
        "Right breast,\n        MLO",
    ):
        assert title in html
    assert html.count("breast from the DICOM header") == 4
    # every view is drawn with the breast outline (cyan) the model found
    images = re.findall(
        r'<img src="data:image/png;base64,([^"]+)" alt="View \d, image\d\.dcm, with the breast outline"', html
    )
    assert len(images) == 4
    for src in images:
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(src))).convert("RGB")).astype(int)
        assert ((shown[..., 2] > 200) & (shown[..., 1] > 180) & (shown[..., 0] < 60)).sum() > 50
    rows = re.findall(r'<tr class="breast[^"]*" data-laterality="([LR]?)">\s*<th scope="row">([^<]+)</th>', html)
    assert rows == [("L", "Left breast"), ("R", "Right breast")]
    for b in body["breasts"]:
        assert f'<td class="breast-p">{b["p_malignant"]:.3f}</td>' in html
    assert f'id="exam-density-label">{body["exam"]["density_meaning"]}<' in html
    assert "AUC per breast" in html and "the higher (denser) one" in html
    assert "Crop boxes and the occlusion heatmap are for single images" in html
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [] and " style=" not in html
    assert resp.headers["Cache-Control"] == "no-store" and 'id="provenance"' in html


def test_index_page_offers_an_exam_upload(client):
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'<input type="file" id="file" name="file" required multiple', html)
    assert 'id="views-panel"' in html and 'data-max-files="8"' in html and 'data-views="CC,MLO,' in html
    assert "up to 8 images of one exam" in html and "P001_L_CC.png" in html
    js = client.get("/static/upload.js").get_data(as_text=True)
    assert 'pick("laterality"' in js and 'pick("view"' in js and "label.htmlFor" in js
