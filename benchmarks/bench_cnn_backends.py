"""Which runtime runs MobileNetV2 fastest on this CPU, with identical embeddings?

Compares, on the same random 224x224 batches: Keras ``model.predict``
(batch 32, the baseline), a ``tf.function`` with a fixed batch shape (with
and without XLA), and ONNX Runtime on the tf2onnx-converted graph (what
``CNNEmbedding(backend="auto")`` uses). Prints images/s, the speed-up over
``predict`` and the max abs difference of the embeddings (must be <= 1e-4).

    python benchmarks/bench_cnn_backends.py --n 256
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256, help="images per timing, a multiple of 32 (default: 256)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per runtime; the best counts (default: 3)")
    parser.add_argument("--xla", action="store_true", help="also time tf.function(jit_compile=True) (slow to compile)")
    args = parser.parse_args(argv)
    n = max(32, args.n // 32 * 32)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from mammo.features.cnn import load_runner

    model = keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), include_top=False, pooling="avg", weights="imagenet"
    )
    x = np.random.default_rng(0).uniform(-1, 1, size=(n, 224, 224, 3)).astype(np.float32)

    def batched(fn):
        return lambda: np.concatenate([np.asarray(fn(x[i : i + 32])) for i in range(0, n, 32)])

    fixed = tf.function(lambda z: model(z, training=False), input_signature=[tf.TensorSpec([32, 224, 224, 3])])
    runtimes = {
        "keras_predict": lambda: model.predict(x, batch_size=32, verbose=0),
        "tf_function_fixed_batch": batched(fixed),
        "onnxruntime": batched(load_runner("imagenet", 224, "onnx")),
    }
    if args.xla:
        xla = tf.function(
            lambda z: model(z, training=False), jit_compile=True, input_signature=[tf.TensorSpec([32, 224, 224, 3])]
        )
        runtimes["tf_function_xla"] = batched(xla)

    results, reference = {}, None
    for name, run in runtimes.items():
        out = run()  # warm-up (tracing, session start)
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = run()
            best = min(best, time.perf_counter() - t)
        reference = out if reference is None else reference
        results[name] = (n / best, float(np.abs(out - reference).max()))
    base = results["keras_predict"][0]
    print(f"{'runtime':<26}{'img/s':>8}{'x predict':>11}{'max |diff|':>12}")
    for name, (speed, diff) in results.items():
        print(f"{name:<26}{speed:8.1f}{speed / base:11.2f}{diff:12.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
