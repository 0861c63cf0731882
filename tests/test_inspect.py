"""mammo inspect: contact sheets and a CSV of how the breast was found."""

from __future__ import annotations

import csv

import numpy as np
from PIL import Image

from mammo.cli import main as mammo_main
from mammo.inspection import inspect_image
from mammo.testing import film_scan, non_mammograms, synthetic_mammogram, write_png


def test_inspect_writes_sheets_and_a_row_per_image(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(5):
        img = synthetic_mammogram(rng, 1 + i % 4, shape=(240, 192), side="left" if i % 2 else "right", inverted=i == 3)
        write_png(img, folder / f"m{i}.png")
    film, _ = film_scan(synthetic_mammogram(rng, 2, shape=(240, 192), film_label=False), rng)
    Image.fromarray((film * 65535).astype(np.uint16)).save(folder / "film.png")
    Image.fromarray(non_mammograms()["astronaut"]).save(folder / "photo.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG nope")
    out = tmp_path / "inspect"
    code = mammo_main(
        ["inspect", str(folder), "--out", str(out), "--per-sheet", "3", "--size", "128", "--quiet", "--jobs", "1"]
    )
    assert code == 1 and "6 accepted, 1 refused, 1 unreadable" in capsys.readouterr().err
    sheets = sorted(out.glob("sheet-*.png"))
    assert len(sheets) == 3
    assert Image.open(sheets[0]).width == 3 * 128 + 4 * 6
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader(open(out / "segmentation.csv"))}
    assert len(rows) == 8 and rows["photo.jpg"]["reason"] == "colour" and rows["broken.png"]["error"]
    assert rows["m3.png"]["inverted"] == "True" and rows["m0.png"]["inverted"] == "False"
    assert all(rows[f"m{i}.png"]["accepted"] == "True" for i in range(5)) and rows["film.png"]["accepted"] == "True"


def test_inspect_image_outline_is_drawn(tmp_path):
    img = synthetic_mammogram(np.random.default_rng(1), 3, shape=(240, 192))
    write_png(img, tmp_path / "a.png")
    item = inspect_image(str(tmp_path / "a.png"), side=128)
    assert item.ok and len(item.tiles) == 3
    drawn = np.asarray(item.tiles[1]).astype(int)
    assert ((drawn[..., 2] > 200) & (drawn[..., 0] < 60)).sum() > 30  # the cyan outline


def test_inspect_usage_errors(tmp_path, capsys):
    assert mammo_main(["inspect", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "mammo inspect: error: no images found" in capsys.readouterr().err
