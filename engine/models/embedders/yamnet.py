"""``yamnet``: Google's YAMNet (AudioSet, 521 classes), 1024-d embeddings per 0.96 s window.

Two backends give the same interface:

* ``tflite`` -- a ``.tflite`` file (e.g. the int8 dynamic-range model in
  ``$AUDIOSIM_MODELS/yamnet/yamnet.tflite``) run with ``ai_edge_litert`` when installed,
  else ``tf.lite.Interpreter``;
* ``hub`` -- the official float SavedModel: a TF-Hub handle or a local directory, via
  ``tensorflow_hub``.

Weights: ``weights=PATH`` > ``$AUDIOSIM_MODELS/yamnet/`` > ``~/.cache/audiosim/yamnet/`` >
download of the official TF-Hub model (compressed SavedModel) into that cache, unpacked into
``saved_model/`` atomically (:func:`audiosim.engine.models.weights.extract_tar_atomic`: an interrupted
unpacking leaves no half-filled folder). A file that is not a TFLite model (empty, truncated,
random bytes) is a :class:`WeightsFormatError` naming it and the fix.

Classifier head: :meth:`YamnetEmbedder.embed_frames_with_scores` returns the embeddings and the
521 AudioSet class scores of the same forward pass. The class names come from ``class_map=PATH``
> ``yamnet_class_map.csv`` beside the weights (or in a SavedModel's ``assets/``) > the built-in
AudioSet list without the six classes YAMNet does not predict
(:func:`audiosim.engine.models.embedders.audioset_classes.yamnet_names`, identical to the official file).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from audiosim.engine.models import weights as wts
from audiosim.engine.models.embedders.audioset_classes import yamnet_names
from audiosim.engine.models.embedders.base import (Embedder, EmbedderInfo, check_waveform, checked_class_names,
                                            pad_to_min_length, read_class_map)
from audiosim.errors import MissingDependencyError, WeightsFormatError

SAMPLE_RATE = 16000
MIN_SAMPLES = 15600  # 0.96 s patch + 25 ms STFT window - 10 ms hop: one full patch
HUB_HANDLE = "https://tfhub.dev/google/yamnet/1"
HUB_DOWNLOAD = wts.Download(url=HUB_HANDLE + "?tf-hub-format=compressed", filename="yamnet_1.tar.gz")
LOCAL_NAMES = ("yamnet.tflite", "saved_model")
CLASS_MAP = "yamnet_class_map.csv"
N_CLASSES = 521
WEIGHTS = wts.TfWeights(model="yamnet", files=(("tflite", lambda p: p.is_file() and p.suffix == ".tflite", "yamnet.tflite"),),
                        expected="a .tflite file", hub_handle=HUB_HANDLE)


def resolve_yamnet_weights(weights: str | Path | None, *, allow_download: bool | None = None) -> tuple[str, str]:
    """Return ``(backend, location)`` for explicit weights or the standard search order."""
    if weights is not None:
        return wts.resolve_tf_weights(WEIGHTS, weights)
    found = wts.search_tf_weights(WEIGHTS)
    if found is not None:
        return found
    found = wts.resolve_or_download("yamnet", names=(*LOCAL_NAMES, HUB_DOWNLOAD.filename), downloads=(HUB_DOWNLOAD,),
                                    allow_download=allow_download)
    archive = found.parent / HUB_DOWNLOAD.filename
    if found.name != HUB_DOWNLOAD.filename and not archive.is_file():
        # a model file or folder the search above did not accept, and no tarball to rebuild it from
        raise WeightsFormatError(
            f"{found} is not a usable YAMNet model (a .tflite file, or a SavedModel folder with saved_model.pb); "
            "delete it so that audiosim downloads the official model again, or pass --weights PATH"
        )
    return "hub", str(wts.extract_tar_atomic(archive, found.parent / "saved_model"))


@contextlib.contextmanager
def _native_stderr_silenced():
    """Silence file descriptor 2 briefly: the TFLite runtime prints an INFO line there from C++ on its first allocation.

    Errors still surface, as the Python exception the interpreter raises.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _tflite_interpreter(path: str, num_threads: int | None):
    """A TFLite interpreter for ``path``; a file that is no TFLite model is a WeightsFormatError."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            import tensorflow as tf
        except ImportError as e:
            raise MissingDependencyError(
                "the YAMNet TFLite backend needs ai-edge-litert or TensorFlow: pip install 'audiosim[tf]' "
                "(or ai-edge-litert), or use --embedder logmel"
            ) from e
        Interpreter = tf.lite.Interpreter
    try:
        return Interpreter(model_path=path, num_threads=num_threads)
    except (ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsFormatError(
            f"{path} is not a readable TFLite model ({reason}); the file may be empty, truncated or not YAMNet: "
            "download it again (delete it to let audiosim fetch the official model) or pass --weights with "
            "yamnet.tflite or the TF-Hub SavedModel"
        ) from e


class YamnetEmbedder(Embedder):
    """YAMNet frame embeddings; ``embed_frames_with_scores`` and ``classify`` also give the 521 class scores."""

    def __init__(self, *, weights: str | Path | None = None, num_threads: int | None = None,
                 allow_download: bool | None = None, class_map: str | Path | None = None) -> None:
        self.backend, self.location = resolve_yamnet_weights(weights, allow_download=allow_download)
        self._num_threads = num_threads
        self._weights_arg = str(weights) if weights is not None else None
        self._class_map_arg = str(class_map) if class_map is not None else None
        self._class_names: list[str] | None = None
        if self.backend == "tflite":
            self._interp = _tflite_interpreter(self.location, num_threads)
            self._input = self._interp.get_input_details()[0]["index"]
            self._outputs = {d["shape_signature"][-1] if len(d["shape_signature"]) else -1: d["index"]
                             for d in self._interp.get_output_details()}
            if 1024 not in self._outputs or N_CLASSES not in self._outputs:
                raise WeightsFormatError(
                    f"{self.location} is a TFLite model but not YAMNet (outputs of size {sorted(self._outputs)}, "
                    f"expected 1024 and {N_CLASSES}); pass --weights with the YAMNet yamnet.tflite"
                )
            self._allocated_len = None
            sha = wts.sha256_file(self.location)
        else:
            try:
                import tensorflow_hub as hub
            except ImportError as e:
                raise MissingDependencyError(
                    "the YAMNet TF-Hub backend needs TensorFlow: pip install 'audiosim[tf]', or pass a .tflite file"
                ) from e
            self._model = hub.load(self.location)
            local = Path(self.location) if Path(self.location).exists() else Path(hub.resolve(self.location))
            sha = wts.sha256_tree(local)
            self._hub_dir = local
        self.info = EmbedderInfo(name="yamnet", version=f"1/{self.backend}", sample_rate=SAMPLE_RATE, dim=1024,
                                 window_s=0.96, hop_s=0.48, weights_sha256=sha)

    def options(self) -> dict:
        opts = {"weights": self._weights_arg}
        if self._class_map_arg is not None:
            opts["class_map"] = self._class_map_arg
        return opts

    def _run(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = pad_to_min_length(check_waveform(waveform), MIN_SAMPLES)
        if self.backend == "tflite":
            if self._allocated_len != x.size:
                self._interp.resize_tensor_input(self._input, [x.size], strict=False)
                if self._allocated_len is None:  # the first allocation prints the runtime's XNNPACK notice
                    with _native_stderr_silenced():
                        self._interp.allocate_tensors()
                else:
                    self._interp.allocate_tensors()
                self._allocated_len = x.size
            self._interp.set_tensor(self._input, x)
            self._interp.invoke()
            scores = self._interp.get_tensor(self._outputs[521])
            emb = self._interp.get_tensor(self._outputs[1024])
        else:
            scores, emb, _ = self._model(x)
            scores, emb = scores.numpy(), emb.numpy()
        return np.array(scores, dtype=np.float32), np.array(emb, dtype=np.float32)

    def embed_frames(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, emb = self._run(waveform)
        return emb, self.frame_times(emb.shape[0])

    def embed_frames_with_scores(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Embeddings [T, 1024], window start times [T] and the 521 class scores [T, 521] of one forward pass."""
        scores, emb = self._run(waveform)
        return emb, self.frame_times(emb.shape[0]), scores

    def classify(self, waveform: np.ndarray) -> np.ndarray:
        """[T, 521] AudioSet class scores per window."""
        scores, _ = self._run(waveform)
        return scores

    def class_names(self) -> list[str]:
        """The 521 display names: ``class_map`` > the class map beside the weights > the built-in list."""
        if self._class_names is None:
            path = self._class_map_path()
            names = read_class_map(path) if path is not None else yamnet_names()
            self._class_names = checked_class_names(names, N_CLASSES, source=str(path or "built-in"))
        return list(self._class_names)

    def _class_map_path(self) -> Path | None:
        if self._class_map_arg is not None:
            return Path(self._class_map_arg).expanduser()
        base = Path(self.location)
        places = [base.parent / CLASS_MAP, base / "assets" / CLASS_MAP, base.parent / "assets" / CLASS_MAP]
        if self.backend == "hub":
            places.insert(0, self._hub_dir / "assets" / CLASS_MAP)
        return next((p for p in places if p.is_file()), None)
