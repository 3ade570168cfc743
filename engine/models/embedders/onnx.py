"""``onnx``: any ONNX audio model, run by onnxruntime, described by a small JSON sidecar.

``weights=MODEL.onnx`` (the sidecar defaults to ``MODEL.json`` beside it; ``sidecar=PATH``
names another). The sidecar says what the model expects and which output is the embedding::

    {
      "name": "my-encoder",               # recorded in the collection (with the sidecar's sha256)
      "sample_rate": 16000,
      "window_s": 1.0, "hop_s": 0.5,      # or "window_samples" / "hop_samples"
      "input": {"name": "audio", "layout": "BT"},
      "output": {"name": "embedding", "reduce": "mean"},
      "frontend": {"type": "waveform"}
    }

* ``input.layout``: one letter per axis of the model's input -- ``B`` batch, ``C`` a channel
  axis of size 1, and either ``T`` (samples; the ``waveform`` front end) or ``F`` (STFT frames)
  and ``M`` (mel bands) for the ``logmel`` front end, e.g. ``BT``, ``BTC``, ``BCT``, ``BFM``,
  ``BCMF``. ``B`` may be left out for models that take one window at a time.
* ``output``: ``name`` (default: the first output); its value per window is ``[..., D]``;
  any axes between batch and the last are reduced by ``reduce`` (``mean`` or ``max``).
* ``frontend``: ``{"type": "waveform"}`` (raw samples), or ``{"type": "logmel", ...}`` with the
  parameters of :class:`audiosim.engine.audio.frontend.LogMelParams` (``n_fft``,
  ``win_length``, ``hop_length``, ``n_mels``, ``fmin``, ``fmax``, ``mel_scale``, ``norm``,
  ``power``, ``log``, ``log_offset``, ``center``).

The recording is cut into windows of ``window`` samples every ``hop`` (full windows only; a
recording shorter than one window is zero-padded to one window); each window gives one frame.
Windows go through the model ``batch_size`` at a time, or one at a time when the model's
batch axis is fixed at 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from audiosim.engine.audio.frontend import LogMelParams, log_mel, mel_filterbank
from audiosim.engine.models import weights as wts
from audiosim.engine.models.embedders.base import Embedder, EmbedderInfo, check_waveform, window_starts
from audiosim.errors import InvalidOptionError, MissingDependencyError, WeightsFormatError, WeightsNotFoundError

MODEL = "onnx"
REDUCTIONS = ("mean", "max")
SIDECAR_KEYS = {"name", "sample_rate", "window_s", "hop_s", "window_samples", "hop_samples", "input", "output",
                "frontend", "description"}


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingDependencyError("the onnx embedder needs onnxruntime: pip install 'audiosim[models]' "
                                     "(or pip install onnxruntime)") from e
    return onnxruntime


class OnnxEmbedder(Embedder):
    """An ONNX model's embedding per window, as its sidecar describes."""

    def __init__(self, *, weights: str | Path | None = None, sidecar: str | Path | None = None, device: str = "cpu",
                 batch_size: int = 16, threads: int = 0) -> None:
        if weights is None:
            raise WeightsNotFoundError("the onnx embedder needs the model: --weights MODEL.onnx (with a MODEL.json "
                                       "sidecar beside it, or --option sidecar=PATH); see docs/models.md")
        if device not in ("cpu", "cuda"):
            raise InvalidOptionError(f"onnx device must be 'cpu' or 'cuda', got {device!r}")
        if int(batch_size) < 1:
            raise InvalidOptionError("onnx batch_size must be >= 1")
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"--weights {weights}: no such ONNX file")
        side = Path(sidecar).expanduser() if sidecar is not None else path.with_suffix(".json")
        if not side.is_file():
            raise WeightsNotFoundError(f"{side}: the onnx embedder needs a JSON sidecar describing the model "
                                       "(sample rate, window, input layout, output); see docs/models.md")
        self.path, self.sidecar_path = path, side
        self.spec = _read_sidecar(side)
        ort = import_onnxruntime()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise MissingDependencyError("device 'cuda' requested but this onnxruntime has no CUDA provider "
                                             "(pip install onnxruntime-gpu); use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise WeightsFormatError(f"{path} is not an ONNX model onnxruntime can load ({e})") from None
        self._setup_io(side)
        self.batch_size = int(batch_size) if self._batched else 1
        self._args = {"weights": str(weights), "sidecar": str(sidecar) if sidecar is not None else None}
        dim = self._probe_dim()
        self.info = EmbedderInfo(name=MODEL, version=f"{self.spec['name']}/{wts.sha256_file(side)[:12]}",
                                 sample_rate=self.sample_rate, dim=dim, window_s=self.window / self.sample_rate,
                                 hop_s=self.hop / self.sample_rate, weights_sha256=wts.sha256_file(path))

    # ------------------------------------------------------------------ setup
    def _setup_io(self, side: Path) -> None:
        s = self.spec
        self.sample_rate = int(s["sample_rate"])
        self.window = int(s.get("window_samples") or round(float(s["window_s"]) * self.sample_rate))
        self.hop = int(s.get("hop_samples") or round(float(s.get("hop_s", s.get("window_s", 0))) * self.sample_rate))
        if self.window < 1 or not 0 < self.hop <= self.window:
            raise WeightsFormatError(f"{side}: need a window of at least one sample and 0 < hop <= window")
        inputs = {i.name: i for i in self.session.get_inputs()}
        want = (s.get("input") or {}).get("name") or next(iter(inputs))
        if want not in inputs:
            raise WeightsFormatError(f"{side}: the model has no input {want!r}; its inputs are {', '.join(inputs)}")
        if len(inputs) != 1:
            raise WeightsFormatError(f"{side}: the model takes {len(inputs)} inputs ({', '.join(inputs)}); "
                                     "the onnx embedder runs models with one audio input")
        self.input_name = want
        layout = str((s.get("input") or {}).get("layout", "BT")).upper()
        shape = inputs[want].shape
        if len(layout) != len(shape):
            raise WeightsFormatError(f"{side}: input layout {layout!r} has {len(layout)} axes but the model's input "
                                     f"{want!r} has shape {shape}")
        frontend = dict(s.get("frontend") or {"type": "waveform"})
        kind = frontend.get("type", "waveform")
        if kind == "waveform":
            if sorted(layout.replace("B", "").replace("C", "")) != ["T"]:
                raise WeightsFormatError(f"{side}: a waveform input's layout holds T (samples), optionally B and C; "
                                         f"got {layout!r}")
            self.frontend = None
        elif kind == "logmel":
            if sorted(layout.replace("B", "").replace("C", "")) != ["F", "M"]:
                raise WeightsFormatError(f"{side}: a logmel input's layout holds F (frames) and M (mels), optionally "
                                         f"B and C; got {layout!r}")
            try:
                self.frontend = LogMelParams.from_dict(frontend, sample_rate=self.sample_rate, source=str(side))
            except (InvalidOptionError, TypeError, ValueError) as e:
                raise WeightsFormatError(str(e)) from None
            if self.frontend.sample_rate != self.sample_rate:
                raise WeightsFormatError(f"{side}: the front end's sample_rate differs from the model's")
            self._basis = mel_filterbank(self.frontend)
        else:
            raise WeightsFormatError(f"{side}: frontend type must be 'waveform' or 'logmel', got {kind!r}")
        if layout.count("C") > 1 or any(layout.count(a) != 1 for a in layout.replace("C", "")):
            raise WeightsFormatError(f"{side}: input layout {layout!r} names an axis twice")
        self.layout = layout
        self._batched = "B" in layout and not (isinstance(shape[layout.index("B")], int) and shape[layout.index("B")] == 1)
        for axis, size in zip(layout, shape):  # fixed sizes the sidecar must agree with
            expect = {"T": self.window, "C": 1,
                      "F": self.frontend.n_frames(self.window) if self.frontend else None,
                      "M": self.frontend.n_mels if self.frontend else None}.get(axis)
            if isinstance(size, int) and expect is not None and size != expect:
                raise WeightsFormatError(f"{side}: the model's input axis {axis} has size {size} but the sidecar "
                                         f"implies {expect} (window {self.window} samples); fix the sidecar")
        outputs = [o.name for o in self.session.get_outputs()]
        out = s.get("output") or {}
        self.output_name = out.get("name") or outputs[0]
        if self.output_name not in outputs:
            raise WeightsFormatError(f"{side}: the model has no output {self.output_name!r}; its outputs are "
                                     f"{', '.join(outputs)}")
        self.reduce = out.get("reduce", "mean")
        if self.reduce not in REDUCTIONS:
            raise WeightsFormatError(f"{side}: output reduce must be one of {', '.join(REDUCTIONS)}")

    def _probe_dim(self) -> int:
        return int(self._run([np.zeros(self.window, dtype=np.float32)]).shape[1])

    def options(self) -> dict:
        return {k: v for k, v in self._args.items() if v is not None}

    # ------------------------------------------------------------------ running
    def _model_input(self, windows: np.ndarray) -> np.ndarray:
        """``[n, window]`` samples -> the model's input tensor in its layout."""
        if self.frontend is None:
            x, axes = windows, "BT"
        else:
            x, axes = log_mel(windows, self.frontend, self._basis), "BFM"
        if "C" in self.layout:
            x, axes = x[:, None], "B" + "C" + axes[1:]
        if "B" not in self.layout:
            x, axes = x[0], axes[1:]
        order = [axes.index(a) for a in self.layout]
        return np.ascontiguousarray(np.transpose(x, order), dtype=np.float32)

    def _run(self, windows: list[np.ndarray]) -> np.ndarray:
        out = []
        for i in range(0, len(windows), self.batch_size):
            chunk = np.stack(windows[i:i + self.batch_size])
            y = self.session.run([self.output_name], {self.input_name: self._model_input(chunk)})[0]
            y = np.asarray(y, dtype=np.float32)
            if "B" not in self.layout:
                y = y[None]
            if y.ndim < 2 or y.shape[0] != chunk.shape[0]:
                raise WeightsFormatError(f"output {self.output_name!r} has shape {y.shape}; expected one embedding "
                                         f"per window ([{chunk.shape[0]}, ..., D])")
            if y.ndim > 2:
                flat = y.reshape(y.shape[0], -1, y.shape[-1])
                y = flat.mean(axis=1) if self.reduce == "mean" else flat.max(axis=1)
            out.append(y)
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def _windows(self, waveform: np.ndarray) -> list[np.ndarray]:
        x = check_waveform(waveform)
        if x.size <= self.window:
            return [np.pad(x, (0, self.window - x.size))]
        starts = window_starts(x.size, window=self.window, hop=self.hop)
        return list(np.lib.stride_tricks.sliding_window_view(x, self.window)[starts])

    def embed_frames(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = self._run(self._windows(waveform))
        if not np.isfinite(frames).all():
            raise WeightsFormatError(f"{self.path} produced non-finite embeddings")
        return frames, self.frame_times(frames.shape[0])


def _read_sidecar(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsFormatError(f"{path}: the sidecar is not readable JSON ({e})") from None
    if not isinstance(spec, dict):
        raise WeightsFormatError(f"{path}: the sidecar must be a JSON object")
    unknown = sorted(set(spec) - SIDECAR_KEYS)
    if unknown:
        raise WeightsFormatError(f"{path}: unknown sidecar keys {', '.join(unknown)}; known: {', '.join(sorted(SIDECAR_KEYS))}")
    if "sample_rate" not in spec or not ("window_s" in spec or "window_samples" in spec):
        raise WeightsFormatError(f"{path}: the sidecar needs sample_rate and window_s (or window_samples)")
    try:
        if int(spec["sample_rate"]) <= 0:
            raise ValueError
    except (TypeError, ValueError):
        raise WeightsFormatError(f"{path}: sample_rate must be a positive integer") from None
    spec.setdefault("name", path.stem)
    return spec
