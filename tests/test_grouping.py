"""Near-duplicate grouping: synthetic augmented copies, reports, leakage audit, real DPhi."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from mammo.audit import audit
from mammo.grouping import (
    SIGNATURE_VERSION,
    audit_split,
    contact_sheet,
    find_duplicate_groups,
    group_report,
    image_signature,
)
from mammo.testing import write_png

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def test_signature_shape_and_blank(original):
    sig = image_signature(original)
    assert sig.ndim == 2 and sig.shape[1] == 131 and len(sig) > 20
    assert set(np.unique(sig[:, 2])) == {0.0, 1.0}  # image and mirror
    assert image_signature(np.zeros((64, 64))).shape == (0, 131)


@pytest.mark.slow
def test_synthetic_copies_are_grouped_exactly(dphi_copies, tmp_path):
    images, truth = dphi_copies
    groups, det = find_duplicate_groups(images, progress=False, cache_dir=tmp_path, return_details=True)
    assert adjusted_rand_score(truth, groups) == 1.0, group_report(groups, truth)
    assert len(set(groups)) == 6
    assert any((tmp_path / SIGNATURE_VERSION).rglob("*.npz"))
    # without the result, a second call reads the signature cache and gives the same answer
    shutil.rmtree(tmp_path / "groups")
    assert (find_duplicate_groups(images, progress=False, cache_dir=tmp_path) == groups).all()


def test_mirror_rows_are_sift_of_the_mirror_image(original):
    """The derived mirror keypoints are what SIFT finds on the mirrored image."""
    im = original
    sig = image_signature(im)
    mirrored = sig[sig[:, 2] == 1]
    direct = image_signature(im[:, ::-1].copy())
    direct = direct[direct[:, 2] == 0]
    # each derived keypoint's nearest directly found descriptor sits at its position
    # (a wrong descriptor permutation gets at most ~10 % of them right)
    j = np.linalg.norm(mirrored[:, None, 3:] - direct[None, :, 3:], axis=2).argmin(1)
    at = np.linalg.norm(mirrored[:, :2] - direct[j, :2], axis=1) < 1.0
    assert at.mean() > 0.8, at.mean()


def _reference_inliers(a: np.ndarray, b: np.ndarray, ratio: float = 0.8, reproj: float = 4.0) -> int:
    """The matching of signature v2, with cv2.BFMatcher: a's own rows against b and b's mirror."""
    import cv2

    a0 = a[a[:, 2] == 0].astype(np.float32)
    best = 0
    for m in (0, 1):
        bb = b[b[:, 2] == m].astype(np.float32)
        pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a0[:, 3:], bb[:, 3:], k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
        if len(good) >= 3:
            _, inl = cv2.estimateAffinePartial2D(
                a0[[g.queryIdx for g in good], :2],
                bb[[g.trainIdx for g in good], :2],
                method=cv2.RANSAC,
                ransacReprojThreshold=reproj,
            )
            best = max(best, int(inl.sum())) if inl is not None else best
    return best


def test_matrix_product_matching_agrees_with_bfmatcher(dphi_copies):
    from mammo.grouping.signature import signature_parts
    from mammo.grouping.verification import match_inliers

    images, truth = dphi_copies
    idx = [0, 1, 2, 5, 10, 11, 20, 35, 59]
    parts = {i: signature_parts(images[i]) for i in idx}
    rows = {i: image_signature(images[i]) for i in idx}
    scores = []
    for i in idx:
        for j in idx:
            if i < j:
                ours, ref = match_inliers(parts[i], parts[j]), _reference_inliers(rows[i], rows[j])
                scores.append((truth[i] == truth[j], ours, ref))
                # same matches; RANSAC draws differ with the direction of the mirror
                assert abs(ours - ref) <= max(2, 0.1 * ref), (i, j, ours, ref)
    same = [o for t, o, _ in scores if t]
    other = [o for t, o, _ in scores if not t]
    assert min(same) >= 15 and max(other) < 15, scores


def test_identical_images_are_signed_once(dphi_copies, tmp_path):
    images, truth = dphi_copies
    images = list(images[:20])
    dup = images + [images[3].copy(), images[15].copy()]
    groups, det = find_duplicate_groups(dup, progress=False, cache_dir=tmp_path, return_details=True)
    assert det["n_unique_images"] == 20
    assert len(list((tmp_path / SIGNATURE_VERSION).rglob("*.npz"))) == 20
    assert groups[20] == groups[3] and groups[21] == groups[15]
    assert np.array_equal(groups[:20], find_duplicate_groups(images, progress=False, cache_dir=False))
    assert len(det["best_inliers"]) == 22 and det["best_inliers"][20] == det["best_inliers"][3]
    # indices in the details refer to the input (the first of identical images)
    assert all(i < 20 and j < 20 for i, j, _ in det["verified"])


def test_group_report_counts_impure_groups():
    rep = group_report(["a", "a", "a", "b", "b", "c"], ["x", "x", "y", "z", "z", "z"])
    assert rep["n_groups"] == 3 and rep["n_singletons"] == 1
    assert rep["size_counts"] == {"1": 1, "2": 1, "3": 1}
    assert rep["n_impure"] == 1 and rep["minority_images"] == 1
    assert rep["impure_groups"][0]["labels"] == {"x": 2, "y": 1}
    json.dumps(rep)


def test_audit_split_finds_leaks():
    leaks = audit_split([0, 0, 1, 1, 2], ["train", "test", "train", "train", "test"], names=list("abcde"))
    assert list(leaks["group"]) == ["0"] and leaks["images"][0] == "a b"
    assert audit_split([0, 0, 1], ["train", "train", "test"]).empty


@pytest.mark.slow
def test_audit_cli_detects_leaky_split(dphi_copies, tmp_path):
    images, truth = dphi_copies
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = []
    for i, im in enumerate(images[:30]):  # three originals x 10 copies
        names.append(f"img_{i:03d}.png")
        write_png(im, folder / names[-1])
    # leaky: alternate copies between train and test
    pd.DataFrame({"filename": names, "split": ["train", "test"] * 15}).to_csv(tmp_path / "split.csv", index=False)
    pd.DataFrame({"filename": names, "label": truth[:30]}).to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "out"
    env_cache = {"MAMMO_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [
        sys.executable,
        "-m",
        "mammo.cli",
        "audit",
        str(folder),
        "--split",
        str(tmp_path / "split.csv"),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--out",
        str(out),
        "--no-progress",
    ]
    import os

    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env_cache}, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "3 groups" in res.stdout and "leak" in res.stdout.lower()
    g = pd.read_csv(out / "groups.csv")
    assert adjusted_rand_score(truth[:30], g["group"]) == 1.0
    for f in ("group_sizes.png", "contact_sheet_1.png", "report.json", "leaks.csv"):
        assert (out / f).is_file()
    assert json.loads((out / "report.json").read_text())["n_leaking_groups"] == 3
    # a grouped split is clean: exit code 0
    pd.DataFrame({"filename": names, "split": np.where(truth[:30] == 0, "test", "train")}).to_csv(
        tmp_path / "split.csv", index=False
    )
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env_cache}, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_audit_errors(tmp_path):
    from mammo.conventions import NoImagesError

    with pytest.raises(NoImagesError, match="no such file or folder"):
        audit(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        audit(tmp_path / "empty", tmp_path / "out")


def test_contact_sheet(dphi_copies, tmp_path):
    images, truth = dphi_copies
    contact_sheet(images, truth, tmp_path / "s.png", max_groups=3, per_group=4, thumb=32)
    im = Image.open(tmp_path / "s.png")
    assert im.size == (110 + 4 * 34, 3 * 34)


def _same_details(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert isinstance(b[k], np.ndarray) and np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k] and type(a[k]) is type(b[k]), k


@pytest.fixture()
def count_groupings(monkeypatch):
    """Count the groupings actually computed (cache misses)."""
    from mammo.grouping import find

    calls = []
    real = find._group_signatures

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(find, "_group_signatures", spy)
    return calls


def test_result_cache_returns_the_uncached_result(dphi_copies, tmp_path, count_groupings, monkeypatch):
    images = dphi_copies[0][:30]
    ref, ref_det = find_duplicate_groups(images, progress=False, cache_dir=False, return_details=True)
    assert len(count_groupings) == 1
    assert not (tmp_path / "groups").exists()
    first, first_det = find_duplicate_groups(images, progress=False, cache_dir=tmp_path, return_details=True)
    assert len(count_groupings) == 2 and len(list((tmp_path / "groups").glob("*.json"))) == 1
    assert np.array_equal(first, ref)
    _same_details(first_det, ref_det)

    from mammo.grouping import find

    def fail(*args, **kwargs):
        raise AssertionError("a cache hit must not compute signatures")

    monkeypatch.setattr(find, "signatures", fail)
    hit, hit_det = find_duplicate_groups(images, progress=False, cache_dir=tmp_path, return_details=True)
    assert len(count_groupings) == 2  # nothing recomputed
    assert np.array_equal(hit, ref) and hit.dtype == ref.dtype
    _same_details(hit_det, ref_det)
    assert np.array_equal(find_duplicate_groups(images, progress=False, cache_dir=tmp_path), ref)
    # n_jobs and progress do not change the result, so they share the entry
    assert np.array_equal(find_duplicate_groups(images, progress=False, n_jobs=2, cache_dir=tmp_path), ref)
    assert len(count_groupings) == 2


@pytest.mark.slow
def test_result_cache_misses_on_parameters_content_and_corruption(dphi_copies, tmp_path, count_groupings):
    images = dphi_copies[0][:30]
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = []
    for i, im in enumerate(images):
        paths.append(str(folder / f"img_{i:03d}.png"))
        write_png(im, paths[-1])
    cache = tmp_path / "cache"
    ref = find_duplicate_groups(paths, progress=False, cache_dir=cache)
    find_duplicate_groups(paths, progress=False, cache_dir=cache)
    assert len(count_groupings) == 1
    # every grouping parameter and every signature parameter is part of the key
    for kw in (
        {"threshold": 16},
        {"orphan_threshold": 3},
        {"n_neighbors": 9},
        {"n_words": 256},
        {"n_component_neighbors": 4},
        {"pairs_per_component": 2},
        {"max_passes": 4},
        {"n_features": 250},
    ):
        before = len(count_groupings)
        find_duplicate_groups(paths, progress=False, cache_dir=cache, **kw)
        assert len(count_groupings) == before + 1, kw
    # rewriting a file with the same bytes hits; one changed pixel misses
    n = len(count_groupings)
    write_png(images[0], paths[0])
    find_duplicate_groups(paths, progress=False, cache_dir=cache)
    assert len(count_groupings) == n
    changed = (images[0] * 255).astype(np.uint8)
    changed[0, 0] ^= 1
    Image.fromarray(changed).save(paths[0])
    assert np.array_equal(find_duplicate_groups(paths, progress=False, cache_dir=cache), ref)
    assert len(count_groupings) == n + 1
    # the order of the images is part of the key
    find_duplicate_groups(paths[::-1], progress=False, cache_dir=cache)
    assert len(count_groupings) == n + 2
    # a truncated result file (interrupted write) is recomputed and rewritten
    for f in (cache / "groups").glob("*.json"):
        f.write_text(f.read_text()[:20])
    assert np.array_equal(find_duplicate_groups(paths, progress=False, cache_dir=cache), ref)
    assert len(count_groupings) == n + 3
    find_duplicate_groups(paths, progress=False, cache_dir=cache)
    assert len(count_groupings) == n + 3


def test_result_does_not_depend_on_n_jobs(dphi_copies):
    images = dphi_copies[0][:30]
    g1, d1 = find_duplicate_groups(images, progress=False, cache_dir=False, n_jobs=1, return_details=True)
    g2, d2 = find_duplicate_groups(images, progress=False, cache_dir=False, n_jobs=2, return_details=True)
    assert np.array_equal(g1, g2)
    _same_details(d1, d2)


DPHI = DATA / "dphi-sprint31"


@pytest.mark.slow
@pytest.mark.skipif(not (DPHI / "Training_set.csv").is_file(), reason="../shared/data/dphi-sprint31 not present")
def test_real_dphi_subset_is_label_pure(tmp_path):
    """300 DPhi images of 4 labels: groups must not mix labels, and copies must be found."""
    df = pd.read_csv(DPHI / "Training_set.csv")
    sub = df[df.label.isin(["Density4Malignant", "Density4Benign", "Density2Benign", "Density3Malignant"])]
    sub = sub.groupby("label").head(75)
    paths = [str(DPHI / "train" / f) for f in sub.filename]
    groups = find_duplicate_groups(paths, progress=False, n_jobs=2, cache_dir=tmp_path)
    rep = group_report(groups, sub.label.values)
    assert rep["n_impure"] == 0, rep["impure_groups"]
    # 300 copies of at most ~20 originals: nearly every image has company
    assert rep["n_groups"] <= 40, rep
    assert rep["n_singletons"] <= 6, rep
    # a warm call hashes the files and reads the stored result: no signature, no grouping
    from mammo.grouping import find

    def not_again(*args, **kwargs):
        raise AssertionError("the warm call recomputed what the cache holds")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(find, "signatures", not_again)
        mp.setattr(find, "_group_signatures", not_again)
        again = find_duplicate_groups(paths, progress=False, n_jobs=2, cache_dir=tmp_path)
    assert np.array_equal(again, groups)
