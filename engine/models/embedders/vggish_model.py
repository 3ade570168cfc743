"""The VGGish network, read straight from the official TF1 checkpoint ``vggish_model.ckpt``.

The official TF-Slim definition (``vggish_slim.py``) creates these variables under ``vggish/``;
``slim.repeat`` names the repeated layers ``<scope>/<scope>_<i>``. All convolutions are 3x3,
stride 1, SAME padding, ReLU; all max-pools 2x2, stride 2, SAME; fc2 (the 128-d embedding)
has no activation. Inputs are [N, 96, 64] log-mel patches, flattened after pool4 in NHWC order.

:func:`read_checkpoint` loads the variables with ``tf.train.load_checkpoint`` (V1 single-file
checkpoints, as published, and V2 ``.index``/``.data`` pairs) and demands every variable with
its exact shape, in float32. TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audiosim.errors import MissingDependencyError, WeightsFormatError

EMBEDDING_SIZE = 128
NUM_FRAMES = 96
NUM_BANDS = 64

#: The official variables, in network order, with their shapes.
VARIABLES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("vggish/conv1/weights", (3, 3, 1, 64)),
    ("vggish/conv1/biases", (64,)),
    ("vggish/conv2/weights", (3, 3, 64, 128)),
    ("vggish/conv2/biases", (128,)),
    ("vggish/conv3/conv3_1/weights", (3, 3, 128, 256)),
    ("vggish/conv3/conv3_1/biases", (256,)),
    ("vggish/conv3/conv3_2/weights", (3, 3, 256, 256)),
    ("vggish/conv3/conv3_2/biases", (256,)),
    ("vggish/conv4/conv4_1/weights", (3, 3, 256, 512)),
    ("vggish/conv4/conv4_1/biases", (512,)),
    ("vggish/conv4/conv4_2/weights", (3, 3, 512, 512)),
    ("vggish/conv4/conv4_2/biases", (512,)),
    ("vggish/fc1/fc1_1/weights", (6 * 4 * 512, 4096)),
    ("vggish/fc1/fc1_1/biases", (4096,)),
    ("vggish/fc1/fc1_2/weights", (4096, 4096)),
    ("vggish/fc1/fc1_2/biases", (4096,)),
    ("vggish/fc2/weights", (4096, EMBEDDING_SIZE)),
    ("vggish/fc2/biases", (EMBEDDING_SIZE,)),
)

# (layer scope, kind); a "pool" entry follows each conv group.
_LAYERS = (
    ("vggish/conv1", "conv"), (None, "pool"),
    ("vggish/conv2", "conv"), (None, "pool"),
    ("vggish/conv3/conv3_1", "conv"), ("vggish/conv3/conv3_2", "conv"), (None, "pool"),
    ("vggish/conv4/conv4_1", "conv"), ("vggish/conv4/conv4_2", "conv"), (None, "pool"),
    (None, "flatten"),
    ("vggish/fc1/fc1_1", "fc_relu"), ("vggish/fc1/fc1_2", "fc_relu"),
    ("vggish/fc2", "fc_linear"),
)


def import_tensorflow():
    try:
        import tensorflow as tf
    except ImportError as e:
        raise MissingDependencyError(
            "the vggish embedder needs TensorFlow: pip install 'audiosim[tf]', or use --embedder logmel"
        ) from e
    return tf


def checkpoint_files(prefix: str | Path) -> list[Path]:
    """The files that make up a checkpoint: the V1 file itself, or a V2 prefix's .index and .data parts."""
    p = Path(prefix)
    if p.is_file():
        return [p]
    files = sorted(p.parent.glob(p.name + ".data-*"))
    index = p.parent / (p.name + ".index")
    return [index, *files] if index.is_file() else []


def is_checkpoint(prefix: str | Path) -> bool:
    return bool(checkpoint_files(prefix))


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every official VGGish variable from a TF checkpoint, shape-checked (extra variables are ignored,
    as the official loader ignores them)."""
    tf = import_tensorflow()
    prefix = str(prefix)
    if not is_checkpoint(prefix):
        raise WeightsFormatError(f"{prefix}: no TensorFlow checkpoint there (expected vggish_model.ckpt or a "
                                 "checkpoint prefix with .index/.data files)")
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError, RuntimeError) as e:
        raise WeightsFormatError(
            f"{prefix} is not a readable TensorFlow checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "the file may be truncated or corrupt: download vggish_model.ckpt again"
        ) from e
    problems = []
    for name, shape in VARIABLES:
        if name not in shapes:
            problems.append(f"missing {name}")
        elif tuple(shapes[name]) != shape:
            problems.append(f"{name} has shape {tuple(shapes[name])}, expected {shape}")
        elif dtypes[name] != tf.float32:
            problems.append(f"{name} has dtype {dtypes[name].name}, expected float32")
    if problems:
        raise WeightsFormatError(
            f"{prefix} is not the official VGGish checkpoint: " + "; ".join(problems[:6])
            + (f" (+{len(problems) - 6} more)" if len(problems) > 6 else "")
        )
    out = {}
    try:
        for name, _ in VARIABLES:
            out[name] = np.asarray(reader.get_tensor(name), dtype=np.float32)
    except (tf.errors.OpError, ValueError, RuntimeError) as e:
        raise WeightsFormatError(f"{prefix}: reading {name} failed ({str(e).splitlines()[0]}); the file may be "
                                 "truncated: download vggish_model.ckpt again") from e
    for name, arr in out.items():
        if not np.isfinite(arr).all():
            raise WeightsFormatError(f"{prefix}: variable {name} holds NaN/infinite values")
    return out


class VggishNet:
    """The VGGish forward pass in TensorFlow ops over checkpoint variables: [N, 96, 64] -> [N, 128]."""

    def __init__(self, variables: dict[str, np.ndarray], *, device: str = "cpu") -> None:
        tf = import_tensorflow()
        self._tf = tf
        self._device = "/GPU:0" if device == "cuda" else "/CPU:0"
        with tf.device(self._device):
            self._params = {name: tf.constant(variables[name]) for name, _ in VARIABLES}
        spec = tf.TensorSpec([None, NUM_FRAMES, NUM_BANDS], tf.float32)
        self._fn = tf.function(self._forward, input_signature=[spec])

    def _forward(self, patches):
        tf = self._tf
        net = tf.reshape(patches, [-1, NUM_FRAMES, NUM_BANDS, 1])
        for scope, kind in _LAYERS:
            if kind == "conv":
                net = tf.nn.relu(tf.nn.conv2d(net, self._params[scope + "/weights"], strides=1, padding="SAME")
                                 + self._params[scope + "/biases"])
            elif kind == "pool":
                net = tf.nn.max_pool2d(net, ksize=2, strides=2, padding="SAME")
            elif kind == "flatten":
                net = tf.reshape(net, [tf.shape(net)[0], -1])
            else:
                net = tf.matmul(net, self._params[scope + "/weights"]) + self._params[scope + "/biases"]
                if kind == "fc_relu":
                    net = tf.nn.relu(net)
        return net

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(patches, dtype=np.float32)
        if x.shape[0] == 0:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        with self._tf.device(self._device):
            return self._fn(self._tf.constant(x)).numpy().astype(np.float32)
