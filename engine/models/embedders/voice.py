"""``voice``: speaker similarity with the GE2E speaker encoder whose weights ship in the ``resemblyzer`` wheel.

The network (3-layer LSTM, 256 units, over 40-band mel power spectra at 16 kHz, 25 ms windows
every 10 ms, a 256-d ReLU projection, L2-normalised) is built here in torch and loaded from the
wheel's ``pretrained.pt`` with ``torch.load(weights_only=True)``; the ``resemblyzer`` package is
never imported (its voice-activity detector needs ``webrtcvad``, which builds from source), so it
can be installed with ``pip install --no-deps resemblyzer``.

A recording is raised to -30 dBFS when quieter (as resemblyzer does; never lowered), its mel
spectrogram taken once, and cut into partial utterances of 160 frames (1.6 s) every 80 frames
(0.8 s); each partial gives one 256-d frame. A recording shorter than 1.6 s is zero-padded to
one partial. Mean pooling then cosine similarity compares speakers as resemblyzer's utterance
embedding does (the mean of the partial embeddings, re-normalised). No voice-activity trimming:
silence in a recording lowers its similarity to others.

Weights: ``weights=PATH`` > ``$AUDIOSIM_MODELS/voice/pretrained.pt`` > the installed resemblyzer
wheel's ``pretrained.pt``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from audiosim.engine.audio.frontend import LogMelParams, log_mel, mel_filterbank
from audiosim.engine.models import weights as wts
from audiosim.engine.models.embedders.base import Embedder, EmbedderInfo, check_waveform
from audiosim.errors import InvalidOptionError, MissingDependencyError, WeightsFormatError, WeightsNotFoundError

MODEL = "voice"
SAMPLE_RATE = 16000
MEL = LogMelParams(sample_rate=SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=40, mel_scale="slaney", norm="slaney",
                   power=2.0, log="none", center=True)
PARTIAL = 160  # mel frames per partial utterance (1.6 s)
PARTIAL_HOP = 80  # 0.8 s
TARGET_DBFS = -30.0
HIDDEN = 256


def packaged_weights() -> Path | None:
    """``pretrained.pt`` inside the installed resemblyzer wheel (found without importing the package)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    return p if p.is_file() else None


def resolve_voice_weights(weights) -> Path:
    if weights is not None:
        p = Path(weights).expanduser()
        if p.is_dir():
            p = p / "pretrained.pt"
        if not p.is_file():
            raise WeightsNotFoundError(f"--weights {weights}: no GE2E checkpoint (pretrained.pt) there")
        return p
    local = wts.find_local(MODEL, ["pretrained.pt"])
    if local is not None:
        return local
    p = packaged_weights()
    if p is None:
        raise WeightsNotFoundError("the voice embedder needs resemblyzer's GE2E weights: pip install --no-deps "
                                   "resemblyzer (ships pretrained.pt), or --weights PATH/pretrained.pt")
    return p


def gain_to_dbfs(x: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """``x`` raised to ``target_dbfs`` RMS when quieter (never lowered; digital silence stays silence)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    if rms <= 0.0:
        return x
    gain = 10.0 ** ((target_dbfs - 20.0 * np.log10(rms)) / 20.0)
    return (x * gain).astype(np.float32) if gain > 1.0 else x


class VoiceEmbedder(Embedder):
    """GE2E speaker embeddings (256-d) of 1.6 s partial utterances every 0.8 s."""

    def __init__(self, *, weights: str | Path | None = None, device: str = "cpu", batch_size: int = 32) -> None:
        if device not in ("cpu", "cuda"):
            raise InvalidOptionError(f"voice device must be 'cpu' or 'cuda', got {device!r}")
        if int(batch_size) < 1:
            raise InvalidOptionError("voice batch_size must be >= 1")
        try:
            import torch
        except ImportError as e:
            raise MissingDependencyError("the voice embedder needs PyTorch: pip install 'audiosim[torch]'") from e
        if device == "cuda" and not torch.cuda.is_available():
            raise MissingDependencyError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu")
        path = resolve_voice_weights(weights)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling refused or not a torch file
            raise WeightsFormatError(f"{path} is not a GE2E checkpoint torch can load safely ({e})") from None
        state = ckpt.get("model_state", ckpt) if isinstance(ckpt, dict) else None
        self._torch = torch
        self.device = torch.device(device)
        self.lstm = torch.nn.LSTM(MEL.n_mels, HIDDEN, 3, batch_first=True)
        self.linear = torch.nn.Linear(HIDDEN, HIDDEN)
        try:
            self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
            self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        except (AttributeError, RuntimeError, KeyError) as e:
            raise WeightsFormatError(f"{path} does not hold the GE2E speaker encoder's lstm/linear weights ({e})") from None
        self.lstm.to(self.device).eval()
        self.linear.to(self.device).eval()
        self._basis = mel_filterbank(MEL)
        self.batch_size = int(batch_size)
        self._weights_arg = str(weights) if weights is not None else None
        hop = MEL.hop_length
        self.info = EmbedderInfo(name=MODEL, version="ge2e/resemblyzer-0.1", sample_rate=SAMPLE_RATE, dim=HIDDEN,
                                 window_s=PARTIAL * hop / SAMPLE_RATE, hop_s=PARTIAL_HOP * hop / SAMPLE_RATE,
                                 weights_sha256=wts.sha256_file(path))

    def options(self) -> dict:
        return {"weights": self._weights_arg} if self._weights_arg is not None else {}

    def partials(self, waveform: np.ndarray) -> np.ndarray:
        """``[n, 160, 40]`` mel power frames of the partial utterances."""
        x = gain_to_dbfs(check_waveform(waveform))
        min_len = (PARTIAL - 1) * MEL.hop_length
        if x.size < min_len:
            x = np.pad(x, (0, min_len - x.size))
        mel = log_mel(x[None], MEL, self._basis)[0]  # log="none": mel power, as the encoder was trained on
        starts = range(0, mel.shape[0] - PARTIAL + 1, PARTIAL_HOP)
        return np.stack([mel[s:s + PARTIAL] for s in starts])

    def embed_frames(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        parts = self.partials(waveform)
        out = []
        with torch.inference_mode():
            for i in range(0, len(parts), self.batch_size):
                _, (hidden, _) = self.lstm(torch.from_numpy(parts[i:i + self.batch_size]).to(self.device))
                e = torch.relu(self.linear(hidden[-1]))
                out.append((e / e.norm(dim=1, keepdim=True).clamp_min(1e-8)).float().cpu().numpy())
        frames = np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
        return frames, self.frame_times(frames.shape[0])
