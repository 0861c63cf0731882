"""Hash every output of the image steps on a fixed sample of inputs; save or compare.

    PYTHONPATH=/path/to/reference/checkout python benchmarks/check_step_outputs.py save runs/ref.json \
        [--model runs/x/model.joblib ...]
    PYTHONPATH=. python benchmarks/check_step_outputs.py compare runs/ref.json [--model ...]

The guard of a speed-up that must not change any output: the hashes of what
:func:`~mammo.features.io.read_scan` gives (pixels, chroma, polarity) and of what
:func:`~mammo.features.region.crop_breast` gives (pixels, mask, box, flip, inversion, the
segmentation's mask, box, scale and every statistic to the last bit, the outline), the
quality gate's verdict, and, for a quarter of the inputs, the crop at other settings, on:
150 DPhi, 150 RSNA and 120 mini-MIAS files (30 of them also as PGM), film, detector,
mirror and inverted copies of 52 of them, 40 synthetic mammograms with film and detector
copies, the non-mammogram corpus, colour JPEG/PNG/RGBA and 16-bit files, float arrays and
DICOM. After the crop: the enhanced image (with and, for a quarter, without CLAHE and
the unsharp mask) and every feature block's row on it (GLCM, LBP, intensity, the CNN's
"multi" and "last" embeddings, in batches of 32 as the pipelines run it); with
``--model``, each saved model's two tasks' ``predict_proba`` rows, out-of-distribution
scores and refusals, streamed as ``mammo predict`` does. ONNX Runtime runs on one thread
(``OMP_NUM_THREADS=1``) so that both sides split the CNN's work the same way.
``compare`` lists the differences and exits 1 if there is any. The JSON holds hashes of
outputs derived from the shared images: keep it out of the repository (runs/).
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ["OMP_NUM_THREADS"] = "1"  # read by the ONNX runner when it starts

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCRATCH = Path(tempfile.gettempdir()) / "mammo-check-step-outputs"


def h(a) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str((a.dtype, a.shape)).encode() + a.tobytes()).hexdigest()[:16]


def fl(v):
    if isinstance(v, float):
        return v.hex()
    if isinstance(v, (np.floating,)):
        return float(v).hex() + "np"
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    return repr(v)


def sample(folder, pattern, n, seed):
    paths = sorted(str(p) for p in (SHARED / folder).glob(pattern))
    rng = np.random.default_rng(seed)
    return [paths[i] for i in sorted(rng.choice(len(paths), n, replace=False))]


def describe_crop(m, with_outline=True) -> dict:
    seg = m.segmentation
    d = {
        "pixels": h(m.pixels),
        "mask": h(m.mask),
        "flipped": bool(m.flipped),
        "inverted": bool(m.inverted),
        "bbox": list(m.bbox),
        "source_shape": list(m.source_shape),
        "chroma": fl(m.chroma),
    }
    if seg is not None:
        d.update(
            seg_mask=h(seg.mask),
            seg_box=[int(v) for v in seg.box],
            seg_scale=fl(seg.scale),
            seg_inverted=bool(seg.inverted),
            seg_polarity=seg.polarity,
            seg_found=bool(seg.found),
            seg_bbox=[int(v) for v in seg.bbox],
            stats={k: fl(v) for k, v in sorted(seg.stats.items())},
        )
        if with_outline:
            d["outline"] = h(np.concatenate(m.outline())) if m.outline() else "none"
    return d


def items():
    """(name, kind, payload): kind 'file' (a path or bytes) or 'array'."""
    out: list = []
    dphi, rsna, mias = _files(out)
    _copies(out, dphi, rsna, mias)
    _encoded(out, rsna, mias)
    return out


def _files(out: list) -> tuple[list, list, list]:
    dphi = sample("dphi-sprint31/train", "*.jpg", 150, 1)
    rsna = sample("rsna-screening/images", "*.jpg", 150, 2)
    mias = sample("mini-mias", "*.png", 120, 3)
    for p in dphi + rsna + mias:
        out.append((Path(p).name, "file", p))
    # mini-MIAS as the distributed PGM (read path of PGM files)
    pgm = SCRATCH / "pgm"
    pgm.mkdir(parents=True, exist_ok=True)
    for p in mias[:30]:
        q = pgm / (Path(p).stem + ".pgm")
        if not q.exists():
            Image.open(p).save(q)
        out.append((q.name, "file", str(q)))
    return dphi, rsna, mias


def _copies(out: list, dphi: list, rsna: list, mias: list) -> None:
    from mammo.features.io import read_image
    from mammo.testing import film_scan, larger_detector, non_mammograms, synthetic_mammogram

    rng = np.random.default_rng(7)
    # film and detector copies of real images, mirrors and inversions
    for p in dphi[:20] + rsna[:20] + mias[:12]:
        img = read_image(p)
        name = Path(p).stem
        out.append((name + "-film", "array", film_scan(img, np.random.default_rng(len(out)))[0]))
        out.append((name + "-det", "array", larger_detector(img)[0]))
        out.append((name + "-detcw", "array", larger_detector(img, where="chest wall")[0]))
        out.append((name + "-mirror", "array", np.ascontiguousarray(img[:, ::-1])))
        out.append((name + "-inv", "array", 1.0 - img))
    for k in range(40):
        shape = [(192, 160), (240, 192), (400, 320), (600, 480)][k % 4]
        side = "left" if k % 2 else "right"
        img = synthetic_mammogram(
            rng, 1 + k % 4, k % 3 == 0, shape=shape, side=side, inverted=k % 5 == 0, structure=k % 7 == 0
        )
        out.append((f"syn{k}", "array", img))
        out.append((f"syn{k}-film", "array", film_scan(img, np.random.default_rng(k))[0]))
        out.append((f"syn{k}-det", "array", larger_detector(img)[0]))
    for name, img in sorted(non_mammograms().items()):
        if name != "binary_blobs":  # random at each call
            out.append((f"non-{name}", "array", img))
    import skimage.data

    out.append(("non-blobs-seeded", "array", skimage.data.binary_blobs(512, rng=0)))


def _encoded(out: list, rsna: list, mias: list) -> None:
    import skimage.data

    from mammo.features.io import read_image
    from mammo.testing import write_dicom

    # encoded colour and deep files (the read step's other paths)
    for name in ("astronaut", "coffee", "chelsea", "immunohistochemistry", "rocket"):
        rgb = getattr(skimage.data, name)()[..., :3]
        for k, (q, sub) in enumerate([(90, 0), (75, 2), (50, 1)]):
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=q, subsampling=sub)
            out.append((f"jpeg-{name}-{k}", "file", buf.getvalue()))
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        out.append((f"png-{name}", "file", buf.getvalue()))
        buf = io.BytesIO()
        Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(buf, format="PNG")
        out.append((f"pnga-{name}", "file", buf.getvalue()))
    for k, p in enumerate(mias[:4] + rsna[:4]):
        g = np.asarray(Image.open(p).convert("L")).astype(np.uint16) * (16 + k)
        buf = io.BytesIO()
        Image.fromarray(g).save(buf, format="PNG")
        out.append((f"png16-{k}", "file", buf.getvalue()))
        out.append((f"arr16-{k}", "array", g))
        out.append((f"arrf-{k}", "array", g.astype(np.float64) / g.max() * 1.5 - 0.2))
    # DICOM (polarity from the header)
    for k, p in enumerate(rsna[:6]):
        arr = (read_image(p) * 4095).astype(np.uint16)
        buf = io.BytesIO()
        write_dicom(arr, buf, photometric="MONOCHROME1" if k % 2 else "MONOCHROME2", bits_stored=12)
        if k % 2:
            buf = io.BytesIO()
            write_dicom(4095 - arr, buf, photometric="MONOCHROME1", bits_stored=12)
        out.append((f"dcm{k}", "file", buf.getvalue()))


def compute(models: list[str]) -> dict:
    from mammo.features.io import read_scan
    from mammo.features.quality import assess
    from mammo.features.region import breast_mask, crop_breast, is_inverted

    res, crops = {}, []
    t_read = t_crop = 0.0
    inputs = items()
    for i, (name, _kind, payload) in enumerate(inputs):
        d = {}
        t = time.perf_counter()
        scan = read_scan(payload)
        t_read += time.perf_counter() - t
        d["read"] = {"pixels": h(scan.pixels), "chroma": fl(scan.chroma), "known": scan.polarity_known}
        t = time.perf_counter()
        m = crop_breast(scan)
        t_crop += time.perf_counter() - t
        d["crop"] = describe_crop(m)
        r = assess(m)
        d["assess"] = [r.ok, r.reason, {k: fl(v) for k, v in sorted(r.failed.items())}]
        if i % 4 == 0:
            d["crop_none"] = describe_crop(crop_breast(scan, size=None), with_outline=False)
            d["crop_noflip"] = describe_crop(crop_breast(scan, flip=False, size=128), with_outline=False)
            d["crop_nofix"] = describe_crop(crop_breast(scan, fix_polarity=False), with_outline=False)
            d["crop_nocrop"] = describe_crop(crop_breast(scan, crop=False), with_outline=False)
        if i % 8 == 0:
            d["breast_mask"] = h(breast_mask(scan.pixels))
            d["is_inverted"] = bool(is_inverted(scan.pixels))
        res[f"{i:04d}-{name}"] = d
        crops.append(m)
    print(f"{len(res)} items; read {t_read:.2f} s, crop {t_crop:.2f} s", file=sys.stderr)
    describe_features(res, crops)
    for path in models:
        describe_predictions(res, path, [payload for _, _, payload in inputs])
    return res


def describe_features(res: dict, crops: list) -> None:
    """The enhanced crops' hashes and every feature block's row on them, into ``res``."""
    from mammo.features import CNNEmbedding, Enhancer, GLCMFeatures, LBPFeatures
    from mammo.features.extra import IntensityFeatures

    t = time.perf_counter()
    enhanced = Enhancer().transform(crops)
    for d, e in zip(res.values(), enhanced):
        d["enhance"] = {"pixels": h(e.pixels), "mask": h(e.mask)}
    plain = Enhancer(clip_limit=0.0, unsharp_amount=0.0).transform(crops[::4])
    for d, e in zip(list(res.values())[::4], plain):
        d["enhance_off"] = h(e.pixels)
    print(f"enhance {time.perf_counter() - t:.2f} s", file=sys.stderr)
    blocks = {
        "glcm": GLCMFeatures(),
        "lbp": LBPFeatures(),
        "intensity": IntensityFeatures(),
        "cnn_multi": CNNEmbedding(layers="multi"),
        "cnn_last": CNNEmbedding(layers="last"),
    }
    for name, block in blocks.items():
        t = time.perf_counter()
        rows = block.fit(enhanced[:2]).transform(enhanced)
        for d, row in zip(res.values(), rows):
            d.setdefault("features", {})[name] = h(row)
        print(f"{name} {time.perf_counter() - t:.2f} s", file=sys.stderr)


def describe_predictions(res: dict, path: str, payloads: list) -> None:
    """A saved model's probabilities, out-of-distribution scores and refusals per input, into ``res``."""
    from mammo.classifiers import load_model

    model = load_model(path)
    model.n_jobs = 1
    t, key, rows = time.perf_counter(), f"predict:{Path(path).parent.name}", list(res.values())
    for indices, proba, ood, failures in model.iter_predict(payloads, errors="record"):
        for k, i in enumerate(indices):
            rows[i][key] = {task: h(p[k]) for task, p in proba.items()}
            if ood is not None:
                rows[i][key]["ood"] = [fl(float(ood[0][k])), bool(ood[1][k])]
        for i, message in failures.items():
            rows[i][key] = {"refused": message}
    print(f"{key} {time.perf_counter() - t:.2f} s", file=sys.stderr)


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                yield f"{path}/{k}: missing on one side"
            else:
                yield from diff(a[k], b[k], f"{path}/{k}")
    elif a != b:
        yield f"{path}: {a} != {b}"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["save", "compare"])
    ap.add_argument("ref", help="the reference JSON to write (save) or read (compare)")
    ap.add_argument("--model", action="append", default=[], help="a saved model whose predictions to hash")
    args = ap.parse_args()
    mode, ref = args.mode, args.ref
    res = json.loads(json.dumps(compute(args.model)))
    if mode == "save":
        Path(ref).write_text(json.dumps(res, indent=0))
    else:
        old = json.loads(Path(ref).read_text())
        bad = list(diff(old, res))
        keys = {line.split("/")[1] for line in bad}
        for line in bad[:40]:
            print(line)
        print(f"{len(bad)} differences in {len(keys)} of {len(old)} items")
        sys.exit(1 if bad else 0)
