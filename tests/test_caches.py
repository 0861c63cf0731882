"""mammo cache: listing the on-disk caches and pruning what no current version reads."""

from __future__ import annotations

import json
import os
import time

import pytest

from mammo import caches
from mammo.featcache import FeatureCache
from mammo.features.enhance import Enhancer
from mammo.features.io import ImageReader
from mammo.features.region import BreastCropper
from mammo.features.texture import GLCMFeatures
from mammo.storage import GROUPS_VERSION, SIGNATURE_VERSION


def _write(path, data=b"x" * 100, age_s=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


@pytest.fixture
def cache_root(tmp_path):
    """A cache with one current and one stale entry of every kind."""
    root = tmp_path / "cache"
    fc = FeatureCache(root / "features")
    current = fc.block_dir([ImageReader(), BreastCropper(size=512), Enhancer()], "glcm", GLCMFeatures())
    _write(current / "ab" / "abc.npy")
    old = _write(
        root / "features" / "cnn-0123" / "chain.json",
        json.dumps({"block": "cnn", "chain": ["mammo-featcache-v0", "x.Y[]"]}).encode(),
    ).parent
    _write(root / SIGNATURE_VERSION / "ab" / "k.npz")
    _write(root / "sift-clahe-v0" / "ab" / "k.npz", b"y" * 1000)
    _write(root / "groups" / "new.json", json.dumps({"version": GROUPS_VERSION}).encode())
    _write(root / "groups" / "old.json", json.dumps({"version": "dup-groups-v0"}).encode())
    _write(root / "onnx" / "m.onnx")
    _write(current / "cd" / "cde.npy.123.456.tmp", age_s=2 * 3600)  # an interrupted write, long ago
    _write(current / "cd" / "fgh.npy.123.789.tmp")  # a write in progress right now
    return root, current, old


def test_scan_marks_exactly_the_entries_no_current_version_reads(cache_root):
    root, current, old = cache_root
    entries = {(e.area, e.path.name): e for e in caches.scan(root)}
    stale = {k for k, e in entries.items() if e.stale}
    assert stale == {
        ("features", "cnn-0123"),
        ("signatures", "sift-clahe-v0"),
        ("groups", "old.json"),
        ("temporary", "cde.npy.123.456.tmp"),
    }
    assert (
        entries[("features", current.name)].what
        == "ImageReader() > BreastCropper(size=512) > Enhancer() > GLCMFeatures()"
    )
    assert entries[("signatures", "sift-clahe-v0")].bytes == 1000
    assert ("temporary", "fgh.npy.123.789.tmp") not in entries  # young: may belong to a running job


def test_prune_removes_the_stale_entries_only(cache_root):
    root, current, old = cache_root
    assert len(caches.prune(root, dry_run=True)) == 4 and old.is_dir()
    gone = caches.prune(root)
    assert {e.path.name for e in gone} == {"cnn-0123", "sift-clahe-v0", "old.json", "cde.npy.123.456.tmp"}
    assert not old.exists() and not (root / "sift-clahe-v0").exists() and not (root / "groups" / "old.json").exists()
    assert (current / "ab" / "abc.npy").is_file() and (current / "cd" / "fgh.npy.123.789.tmp").is_file()
    assert (root / SIGNATURE_VERSION).is_dir() and (root / "groups" / "new.json").is_file()
    assert (root / "onnx" / "m.onnx").is_file()
    assert not [e for e in caches.scan(root) if e.stale]


def test_cli_lists_prunes_and_clears(cache_root, capsys, monkeypatch):
    root, _, old = cache_root
    assert caches.main(["--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "STALE" in out and "sift-clahe-v0" in out and "'mammo cache --prune' removes them" in out

    assert caches.main(["--root", str(root), "--prune"]) == 0
    assert "removed 4 stale entries" in capsys.readouterr().out and not old.exists()

    assert caches.main(["--root", str(root), "--clear", "--dry-run"]) == 0
    assert "would remove" in capsys.readouterr().out and root.is_dir()
    assert caches.main(["--root", str(root), "--clear"]) == 0
    assert not root.exists()

    monkeypatch.setenv("MAMMO_CACHE_DIR", str(root))
    assert caches.main([]) == 0
    assert "no cache yet" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        caches.main(["--prune", "--clear"])


def test_every_cache_uses_one_root(tmp_path, monkeypatch):
    """Feature blocks, grouping signatures, ONNX models and `mammo cache` agree on the root, even for an empty variable."""
    from pathlib import Path

    from mammo import storage
    from mammo.featcache import default_cache_dir
    from mammo.features.cnn import cache_dir
    from mammo.grouping import find
    from mammo.storage import cache_root

    monkeypatch.setattr(storage, "checkout_cache", lambda: None)  # as installed from a wheel
    for value, root in ((str(tmp_path), tmp_path), ("", Path.home() / ".cache" / "mammo")):
        monkeypatch.setenv("MAMMO_CACHE_DIR", value)
        assert cache_dir() == root and find._cache_dir(None) == root and default_cache_dir() == root / "features"
        assert cache_root() == root
    assert find._cache_dir(tmp_path / "x") == tmp_path / "x"
    # in a checkout whose .cache/mammo exists (what make creates), unset means that folder
    (tmp_path / "co" / "mammo").mkdir(parents=True)
    monkeypatch.setattr(storage, "checkout_cache", lambda: tmp_path / "co")
    monkeypatch.delenv("MAMMO_CACHE_DIR")
    assert (
        cache_root() == cache_dir() == tmp_path / "co" / "mammo"
        and default_cache_dir() == tmp_path / "co" / "mammo" / "features"
    )


class _Step:
    """A stateless step with fixed parameters, so the expected key below never changes."""

    def __init__(self, size=256, mode="a"):
        self.size, self.mode = size, mode

    def get_params(self, deep=False):
        return {"size": self.size, "mode": self.mode}


def test_chain_json_is_structured_and_the_folder_key_unchanged(tmp_path):
    import hashlib

    d = FeatureCache(tmp_path).block_dir([_Step(512)], "blk", _Step(mode="b"))
    # the folder key is the sha256 of the step_key texts, as before chain.json was structured
    name = f"{__name__}._Step"
    from mammo.storage import FEATURES_VERSION

    old_key = f"mammo-featcache-v{FEATURES_VERSION}\n{name}[('mode', 'a'), ('size', 512)]\n{name}[('mode', 'b'), ('size', 256)]"
    assert d.name == f"blk-{hashlib.sha256(old_key.encode()).hexdigest()[:20]}"
    chain = json.loads((d / "chain.json").read_text())
    assert chain["format"] == 2 and chain["version"] == FEATURES_VERSION and chain["block"] == "blk"
    assert chain["chain"] == [
        {"class": name, "params": {"mode": "a", "size": 512}},
        {"class": name, "params": {"mode": "b", "size": 256}},
    ]
    stale, what = caches._feature_summary(d)
    assert not stale and what == "_Step(size=512) > _Step(mode='b')"


def test_old_chain_json_is_described_and_rewritten_on_use(tmp_path):
    """A chain.json written before the structured format: same folder, so its features are still read."""
    fc = FeatureCache(tmp_path / "features")
    steps, block = [ImageReader(), BreastCropper(size=512), Enhancer()], GLCMFeatures()
    d = fc.block_dir(steps, "glcm", block)
    from mammo.featcache import chain_key

    (d / "chain.json").write_text(json.dumps({"block": "glcm", "chain": chain_key(steps, block).split("\n")}))
    (e,) = [e for e in caches.scan(tmp_path) if e.area == "features"]
    assert not e.stale and e.what.startswith("ImageReader > BreastCropper > Enhancer > GLCMFeatures (old chain.json")
    assert fc.block_dir(steps, "glcm", block) == d
    assert json.loads((d / "chain.json").read_text())["format"] == 2
    (e,) = [e for e in caches.scan(tmp_path) if e.area == "features"]
    assert e.what == "ImageReader() > BreastCropper(size=512) > Enhancer() > GLCMFeatures()"
