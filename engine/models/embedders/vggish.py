"""``vggish``: Google's VGGish (AudioSet release), one 128-d embedding per 0.96 s of 16 kHz audio.

Two backends give the same interface:

* ``ckpt`` -- the official TF1 checkpoint ``vggish_model.ckpt`` read directly with
  ``tf.train.load_checkpoint`` (no conversion step), run on log-mel patches from the NumPy
  front end in :mod:`.vggish_frontend` (the reference ``vggish_input`` recipe);
* ``hub`` -- the official TF-Hub SavedModel ``google/vggish/1`` (a handle or a local
  directory), which takes the waveform and computes the same front end in TensorFlow.

Frames are non-overlapping 96 x 64 log-mel patches (25 ms window, 10 ms hop, 125-7500 Hz,
``log(mel + 0.01)``); a clip shorter than one patch (15 600 samples) is zero-padded to one.

``postprocess="pca8"`` applies the official post-processing per frame, independent of any
pooling: PCA with whitening (``vggish_pca_params.npz``), clipping to [-2, 2] and 8-bit
quantisation, exactly as ``vggish_postprocess.Postprocessor`` (which truncates, it does not
round); frames then hold the uint8 codes 0..255 as float32 -- the format of the released
AudioSet embeddings.

Weights: ``weights=PATH`` > ``$AUDIOSIM_MODELS/vggish/`` > ``~/.cache/audiosim/vggish/`` >
download of the official checkpoint into that cache. The PCA parameters resolve the same way
(``pca_params=PATH`` first).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from audiosim.engine.models import weights as wts
from audiosim.engine.models.embedders.base import Embedder, EmbedderInfo, check_waveform, pad_to_min_length
from audiosim.engine.models.embedders.vggish_frontend import MIN_SAMPLES, SAMPLE_RATE, VggishFrontend
from audiosim.engine.models.embedders.vggish_model import (
    EMBEDDING_SIZE,
    VggishNet,
    checkpoint_files,
    import_tensorflow,
    is_checkpoint,
    read_checkpoint,
)
from audiosim.errors import InvalidOptionError, MissingDependencyError, WeightsFormatError

MODEL = "vggish"
CKPT_NAME = "vggish_model.ckpt"
PCA_NAME = "vggish_pca_params.npz"
HUB_HANDLE = "https://tfhub.dev/google/vggish/1"
CKPT_DOWNLOAD = wts.Download(url="https://storage.googleapis.com/audioset/vggish_model.ckpt", filename=CKPT_NAME)
PCA_DOWNLOAD = wts.Download(
    url="https://storage.googleapis.com/audioset/vggish_pca_params.npz",
    filename=PCA_NAME,
    sha256="4d878af3e306defbfb37095365aa7e5a6cecb86bad13e859e626151c4e6a8b9d",
    size=73020,
)
POSTPROCESS = (None, "pca8")
# The official post-processing constants (vggish_params.py).
PCA_MEANS_NAME = "pca_means"
PCA_EIGEN_VECTORS_NAME = "pca_eigen_vectors"
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = +2.0


def _weights_spec() -> wts.TfWeights:
    return wts.TfWeights(model=MODEL, files=(("ckpt", is_checkpoint, CKPT_NAME),), hub_handle=HUB_HANDLE,
                         expected=f"the VGGish checkpoint {CKPT_NAME} (or a checkpoint prefix with .index/.data files)")


def resolve_vggish_weights(weights: str | Path | None, *, allow_download: bool | None = None) -> tuple[str, str]:
    """Return ``(backend, location)``: ``("ckpt", checkpoint path)`` or ``("hub", handle or SavedModel dir)``."""
    if weights is not None:
        return wts.resolve_tf_weights(_weights_spec(), weights)
    found = wts.search_tf_weights(_weights_spec())
    if found is not None:
        return found
    path = wts.resolve_or_download(MODEL, names=(CKPT_NAME,), downloads=(CKPT_DOWNLOAD,), allow_download=allow_download)
    return "ckpt", str(path)


def _checkpoint_sha256(prefix: str) -> str:
    """sha256 of a V1 checkpoint file; for a V2 prefix, of its .index and .data files together."""

    files = checkpoint_files(prefix)
    if len(files) == 1:
        return wts.sha256_file(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(wts.sha256_file(f).encode())
    return h.hexdigest()


class VggishPostprocessor:
    """The official PCA-whitening + 8-bit quantisation of raw VGGish embeddings."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with np.load(self.path) as params:
                self.eigen_vectors = np.asarray(params[PCA_EIGEN_VECTORS_NAME], dtype=np.float64)
                self.means = np.asarray(params[PCA_MEANS_NAME], dtype=np.float64).reshape(-1)
        except (OSError, ValueError, KeyError) as e:
            raise WeightsFormatError(
                f"{self.path} is not the VGGish PCA parameter file {PCA_NAME} ({e}); pass pca_params=PATH "
                f"or put the official file in $AUDIOSIM_MODELS/vggish/"
            ) from e
        if self.eigen_vectors.shape != (EMBEDDING_SIZE, EMBEDDING_SIZE) or self.means.shape != (EMBEDDING_SIZE,):
            raise WeightsFormatError(
                f"{self.path}: PCA parameters have shapes {self.eigen_vectors.shape} and {self.means.shape}, "
                f"expected ({EMBEDDING_SIZE}, {EMBEDDING_SIZE}) and ({EMBEDDING_SIZE},)"
            )
        self.sha256 = wts.sha256_file(self.path)

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """[N, 128] raw embeddings -> [N, 128] uint8 codes."""
        e = np.asarray(embeddings)
        if e.ndim != 2 or e.shape[1] != EMBEDDING_SIZE:
            raise ValueError(f"expected [N, {EMBEDDING_SIZE}] embeddings, got shape {e.shape}")
        pca = (e - self.means[None, :]) @ self.eigen_vectors.T
        clipped = np.clip(pca, QUANTIZE_MIN_VAL, QUANTIZE_MAX_VAL)
        scaled = (clipped - QUANTIZE_MIN_VAL) * (255.0 / (QUANTIZE_MAX_VAL - QUANTIZE_MIN_VAL))
        return scaled.astype(np.uint8)


def resolve_pca_params(pca_params: str | Path | None, *, allow_download: bool | None = None) -> Path:
    if pca_params is not None:
        p = Path(pca_params).expanduser()
        if p.is_dir():
            p = p / PCA_NAME
        if not p.is_file():
            raise WeightsFormatError(f"pca_params {pca_params}: no such file (expected {PCA_NAME})")
        return p
    return wts.resolve_or_download(MODEL, names=(PCA_NAME,), downloads=(PCA_DOWNLOAD,), allow_download=allow_download)


class VggishEmbedder(Embedder):
    """VGGish frame embeddings (128-d per 0.96 s), raw or with the official PCA post-processing."""

    def __init__(self, *, weights: str | Path | None = None, postprocess: str | None = None,
                 pca_params: str | Path | None = None, device: str = "cpu", batch_size: int = 64,
                 allow_download: bool | None = None) -> None:
        if postprocess in ("none", ""):
            postprocess = None
        if postprocess not in POSTPROCESS:
            raise InvalidOptionError(f"vggish postprocess must be one of {POSTPROCESS}, got {postprocess!r}")
        if device not in ("cpu", "cuda"):
            raise InvalidOptionError(f"vggish device must be 'cpu' or 'cuda', got {device!r}")
        if batch_size < 1:
            raise InvalidOptionError("vggish batch_size must be >= 1")
        tf = import_tensorflow()
        if device == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise MissingDependencyError("device 'cuda' requested but TensorFlow sees no GPU; use --device cpu")
        self.backend, self.location = resolve_vggish_weights(weights, allow_download=allow_download)
        self._weights_arg = str(weights) if weights is not None else None
        self._pca_arg = str(pca_params) if pca_params is not None else None
        self.postprocess = postprocess
        self.batch_size = int(batch_size)
        self._tf = tf
        self._device = "/GPU:0" if device == "cuda" else "/CPU:0"
        self.frontend = VggishFrontend()
        self._post = VggishPostprocessor(resolve_pca_params(pca_params, allow_download=allow_download)) \
            if postprocess == "pca8" else None
        if self.backend == "ckpt":
            self._net = VggishNet(read_checkpoint(self.location), device=device)
            sha = _checkpoint_sha256(self.location)
        else:
            self._hub_model, sha = self._load_hub(self.location)
        version = f"1/{self.backend}" + (f"+pca8:{self._post.sha256[:12]}" if self._post is not None else "")
        self.info = EmbedderInfo(name=MODEL, version=version, sample_rate=SAMPLE_RATE, dim=EMBEDDING_SIZE,
                                 window_s=0.96, hop_s=0.96, weights_sha256=sha)

    def _load_hub(self, location: str):
        try:
            import tensorflow_hub as hub
        except ImportError as e:
            raise MissingDependencyError(
                "the VGGish TF-Hub backend needs tensorflow_hub: pip install 'audiosim[tf]', or pass the "
                f"checkpoint {CKPT_NAME}"
            ) from e
        try:
            model = hub.load(location)
            local = Path(location) if Path(location).exists() else Path(hub.resolve(location))
            probe = np.asarray(model(self._tf.zeros([MIN_SAMPLES], self._tf.float32)))
        except (OSError, ValueError, TypeError, self._tf.errors.OpError) as e:
            raise WeightsFormatError(f"{location} could not be loaded as the VGGish TF-Hub model: {e}") from e
        if probe.shape != (1, EMBEDDING_SIZE):
            raise WeightsFormatError(
                f"{location} is not VGGish: one 0.975 s waveform gave output shape {probe.shape}, expected (1, 128)"
            )
        return model, wts.sha256_tree(local)

    def options(self) -> dict:
        return {"weights": self._weights_arg, "postprocess": self.postprocess, "pca_params": self._pca_arg}

    def raw_embeddings(self, waveform: np.ndarray) -> np.ndarray:
        """[N, 128] float32 embeddings before any post-processing."""
        x = pad_to_min_length(check_waveform(waveform), MIN_SAMPLES)
        if self.backend == "hub":
            with self._tf.device(self._device):
                return np.asarray(self._hub_model(self._tf.constant(x)), dtype=np.float32)
        return self._run_patches(self.frontend.patches(x))

    def _run_patches(self, patches: np.ndarray) -> np.ndarray:
        out = [self._net(patches[i:i + self.batch_size]) for i in range(0, patches.shape[0], self.batch_size)]
        return np.concatenate(out, axis=0)

    def embed_frames(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = self.raw_embeddings(waveform)
        frames = raw if self._post is None else self._post(raw).astype(np.float32)
        return np.ascontiguousarray(frames, dtype=np.float32), self.frame_times(frames.shape[0])
