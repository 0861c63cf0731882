"""The MobileNetV2 network behind the CNN features: weights, Keras models, the ONNX runner.

ImageNet weights come from ``$KERAS_HOME/models`` (the checkout's ``.cache/keras`` when run
from it, see :func:`mammo.storage.keras_home`) or are downloaded by Keras; a path to a
local ``.h5`` file works too. Models are built once per process under a lock and shared.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..storage import cache_root as cache_dir
from ..storage import export_keras_home, file_sha256, keras_home

N_FEATURES = 1280
WEIGHTS_FILENAME = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

BACKENDS = ("auto", "onnx", "keras")

#: MobileNetV2 layers pooled by ``layers="multi"`` and their channels: the expansion
#: output that ends each resolution stage (56, 28, 14, 14 and 7 px at 224 input), each
#: pooled to mean and std, then the final map, pooled to its mean (the "last" embedding).
MULTI_LAYERS = {
    "block_3_expand_relu": 144,
    "block_6_expand_relu": 192,
    "block_10_expand_relu": 384,
    "block_13_expand_relu": 576,
    "block_16_expand_relu": 960,
    "out_relu": N_FEATURES,
}
LAYER_SETS = ("last", "multi")
#: Where :class:`CNNActivations` cuts MobileNetV2: the output of block 12, the last
#: block at 1/16 of the input side, before the blocks 13-16 and Conv_1 that partial
#: fine-tuning retrains (:mod:`mammo.classifiers.finetune`).
FINETUNE_CUT = "block_12_add"


def _check_layers(layers: str) -> str:
    if layers not in LAYER_SETS:
        raise ValueError(f"layers must be one of {LAYER_SETS}, got {layers!r}")
    return layers


def n_features(layers: str = "last") -> int:
    """Length of the embedding for a ``layers`` setting ("last": 1280, "multi": 5792)."""
    return len(_feature_names(_check_layers(layers)))


def _feature_names(layers: str) -> list[str]:
    if layers == "last":
        return [f"cnn_{i}" for i in range(N_FEATURES)]
    names = []
    for layer, channels in MULTI_LAYERS.items():
        stats = ("mean",) if layer == "out_relu" else ("mean", "std")
        names += [f"cnn_{layer}_{stat}_{i}" for stat in stats for i in range(channels)]
    return names


_MODELS: dict = {}
_RUNNERS: dict = {}
_LOCK = threading.RLock()  # reentrant: the multi-layer model is built on the shared "last" one


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights are neither cached locally nor downloadable."""


def _keras_home() -> Path:
    return keras_home()


# Keras reads KERAS_HOME once, at its import; every mammo path to Keras passes here first.
export_keras_home()


def imagenet_filename(input_size: int = 224) -> str:
    """The ImageNet weights file Keras loads for this input side.

    Keras publishes MobileNetV2 trained at 96, 128, 160, 192 and 224 px and takes the
    224 px file for any other side.
    """
    rows = int(input_size) if int(input_size) in (96, 128, 160, 192) else 224
    return WEIGHTS_FILENAME.replace("_224_", f"_{rows}_")


def resolve_weights(weights: str, input_size: int = 224) -> str:
    """Path of the weights file a ``weights`` parameter refers to, if it is on disk.

    For ``"imagenet"`` that is Keras' own cache (``$KERAS_HOME/models``) of the file for
    ``input_size`` (:func:`imagenet_filename`); it may be absent on a machine that
    will download it on first use.
    """
    if weights == "imagenet":
        return str(_keras_home() / "models" / imagenet_filename(input_size))
    return str(Path(weights).expanduser())


def weights_sha256(weights: str, input_size: int = 224) -> str | None:
    """sha256 of the weights file, or None when it is not on disk (yet)."""
    path = Path(resolve_weights(weights, input_size))
    return file_sha256(path) if path.is_file() else None


def load_backbone(weights: str = "imagenet", input_size: int = 224, layers: str = "last"):
    """The shared Keras MobileNetV2 feature extractor for these weights (built once per process).

    Its output is the pooled embedding, (n, :func:`n_features` (layers)).
    """
    key = (resolve_weights(weights, input_size), int(input_size), _check_layers(layers))
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            if layers == "multi":  # over the same backbone (and weights) as "last", not a second build
                model = _multi_layer_model(load_backbone(weights, input_size, "last"))
            else:
                model = build_backbone(weights, int(input_size))
            _MODELS[key] = model
    return model


def load_trunk(weights: str = "imagenet", input_size: int = 224, cut: str = FINETUNE_CUT):
    """The shared frozen MobileNetV2 from its input to the layer ``cut`` (built once per process).

    Built on :func:`load_backbone`'s model, so it shares its weights. Raises
    ValueError for a layer name MobileNetV2 does not have.
    """
    import keras

    key = (resolve_weights(weights, input_size), int(input_size), "trunk", str(cut))
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            pooled = load_backbone(weights, input_size, "last")
            model = _MODELS[key] = keras.Model(pooled.input, cut_output(pooled, cut))
    return model


def cut_output(model, cut: str):
    """The output tensor of MobileNetV2 ``model``'s layer ``cut``; ValueError naming it if absent."""
    try:
        return model.get_layer(cut).output
    except ValueError:
        raise ValueError(f"MobileNetV2 has no layer {cut!r} (e.g. {FINETUNE_CUT!r})") from None


def _multi_layer_model(pooled):
    """A model over ``pooled``'s backbone returning every MULTI_LAYERS statistic, concatenated."""
    import keras

    # the average-pooled model's last layer is the pooling; its input is out_relu
    backbone = keras.Model(pooled.input, [pooled.get_layer(name).output for name in MULTI_LAYERS])
    x = keras.Input(pooled.input.shape[1:])
    stats = []
    for name, fmap in zip(MULTI_LAYERS, backbone(x)):
        stats.append(keras.layers.GlobalAveragePooling2D(name=f"{name}_mean")(fmap))
        if name != "out_relu":
            stats.append(keras.layers.Lambda(lambda t: keras.ops.std(t, axis=(1, 2)), name=f"{name}_std")(fmap))
    return keras.Model(x, keras.layers.Concatenate()(stats))


def _onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tf2onnx"))


def load_runner(weights: str = "imagenet", input_size: int = 224, backend: str = "auto", layers: str = "last"):
    """A callable mapping a float32 batch (n, s, s, 3) in [-1, 1] to (n, n_features(layers)) embeddings.

    Built once per process and (weights, input size, backend, layers).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _check_layers(layers)
    if backend == "auto":
        backend = "onnx" if _onnx_available() else "keras"
    key = (resolve_weights(weights, input_size), int(input_size), backend, layers)
    with _LOCK:
        runner = _RUNNERS.get(key)
    if runner is None:
        if backend == "keras":
            model = load_backbone(weights, input_size, layers)

            def runner(batch, _model=model):
                return np.asarray(_model(batch, training=False))
        else:
            runner = _onnx_runner(weights, int(input_size), layers)
        with _LOCK:
            runner = _RUNNERS.setdefault(key, runner)
    return runner


def _onnx_runner(weights: str, input_size: int, layers: str = "last"):
    import onnxruntime as ort

    if weights_sha256(weights, input_size) is None:
        load_backbone(weights, input_size)  # "imagenet" not cached yet: Keras downloads it
    sha = weights_sha256(weights, input_size)
    suffix = "" if layers == "last" else f"_{layers}"
    path = cache_dir() / "onnx" / f"mobilenet_v2_{sha[:16]}_{input_size}{suffix}.onnx"
    if not path.is_file():
        # Converted once per weights file; later processes never import TensorFlow.
        model = load_backbone(weights, input_size, layers)
        import tensorflow as tf
        from tf2onnx import convert

        spec = (tf.TensorSpec((None, input_size, input_size, 3), tf.float32, name="input"),)
        proto, _ = convert.from_function(
            tf.function(lambda x: model(x, training=False)), input_signature=spec, opset=17
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(proto.SerializeToString())
        os.replace(tmp, path)  # atomic: concurrent processes never read half a file
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    # ONNX Runtime ignores OMP_NUM_THREADS, but joblib sets it in its worker
    # processes (cores / workers): honour it so that two feature workers do
    # not each start a pool of spinning threads on a 2-core machine
    # (measured: 95 vs 72-79 images/s for the full pipeline).
    options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def runner(batch):
        return session.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    return runner


def build_backbone(weights: str = "imagenet", input_size: int = 224):
    """A NEW average-pooled MobileNetV2, not the process's shared one: for training,
    which changes weights in place. Raises :class:`WeightsUnavailableError` with
    what to do when the weights are neither on disk nor downloadable."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if weights != "imagenet" and not Path(resolve_weights(weights, input_size)).is_file():
        raise WeightsUnavailableError(f"CNN weights file not found: {weights}")
    try:
        return keras.applications.MobileNetV2(
            input_shape=(input_size, input_size, 3),
            include_top=False,
            pooling="avg",
            weights=resolve_weights(weights) if weights != "imagenet" else "imagenet",
        )
    except Exception as exc:  # Keras raises a bare Exception (or URLError) on download failure
        if weights == "imagenet" and not Path(resolve_weights(weights, input_size)).is_file():
            raise WeightsUnavailableError(
                f"Could not download the ImageNet MobileNetV2 weights for {input_size} px "
                f"({exc.__class__.__name__}: {exc}). Offline, copy {imagenet_filename(input_size)} into "
                f"{_keras_home() / 'models'} (or set KERAS_HOME to a folder whose models/ holds it), "
                f"or pass weights='/path/to/{WEIGHTS_FILENAME}' (any input size can use the 224 px file)."
            ) from exc
        raise
