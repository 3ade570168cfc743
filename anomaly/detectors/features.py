"""The detectors' shared front end: DCASE log-mel features computed once per clip and cached.

``logmel`` = the DCASE 2020 baseline's: 16 kHz mono, STFT n_fft 1024, hop 512 (Hann, centred),
128 mel bands, power 2, ``10 * log10(mel + eps)`` (the baseline's ``20 / power * log10``); stored
``[frames, 128]`` float32. A :class:`FeatureCache` keeps every computed array in memory (so several
detectors share them) and, given a folder, on disk keyed by the file's path, size, mtime and the
feature definition.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from audiosim.engine.audio.decode import load_audio
from audiosim.errors import AudiosimError, DatasetError
from audiosim.files import write_bytes_atomic

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop: int = 512
    n_mels: int = 128
    power: float = 2.0

    def to_dict(self) -> dict:
        return asdict(self)


DCASE_LOGMEL = LogMelConfig()


def logmel(waveform: np.ndarray, config: LogMelConfig = DCASE_LOGMEL) -> np.ndarray:
    """[frames, n_mels] float32 log-mel of a mono waveform at ``config.sample_rate`` (DCASE baseline front end)."""
    import librosa

    x = np.asarray(waveform, dtype=np.float32)
    if x.size < config.n_fft:
        x = np.pad(x, (0, config.n_fft - x.size))
    mel = librosa.feature.melspectrogram(y=x, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop,
                                         n_mels=config.n_mels, power=config.power)
    return (20.0 / config.power * np.log10(mel + sys.float_info.epsilon)).T.astype(np.float32)


def stack_frames(lm: np.ndarray, n: int = 5) -> np.ndarray:
    """[frames - n + 1, n * bands]: ``n`` consecutive frames concatenated (the baseline's 640-d vectors)."""
    if lm.shape[0] < n:
        lm = np.pad(lm, ((0, n - lm.shape[0]), (0, 0)), mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(lm, n, axis=0)  # [T-n+1, bands, n]
    return np.ascontiguousarray(view.transpose(0, 2, 1).reshape(view.shape[0], -1))


def patches(lm: np.ndarray, frames: int, hop: int) -> np.ndarray:
    """[P, bands, frames] crops every ``hop`` frames (a short clip is edge-padded to one crop)."""
    if lm.shape[0] < frames:
        lm = np.pad(lm, ((0, frames - lm.shape[0]), (0, 0)), mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(lm, frames, axis=0)[::hop]  # [P, bands, frames]
    return np.ascontiguousarray(view, dtype=np.float32)


class FeatureCache:
    """Per-clip arrays computed once: in memory always, on disk under ``folder`` when given."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._mem: dict[tuple[str, str], np.ndarray] = {}
        self.computed = 0
        self.hits = 0

    def _disk_key(self, path: str, kind: str) -> str:
        st = os.stat(path)
        text = json.dumps([os.path.abspath(path), st.st_size, st.st_mtime_ns, kind])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(self, path: str | Path, kind: str, compute: Callable[[str], np.ndarray]) -> np.ndarray:
        """The array ``kind`` of ``path``, computed by ``compute(path)`` the first time."""
        key = (str(path), kind)
        if key in self._mem:
            self.hits += 1
            return self._mem[key]
        target = None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self.folder / f"{self._disk_key(str(path), kind)}.npy"
            if target.is_file():
                try:
                    arr = np.load(target, allow_pickle=False)
                    self._mem[key] = arr
                    self.hits += 1
                    return arr
                except (ValueError, OSError):
                    pass  # a damaged cache entry is recomputed below
        arr = compute(str(path))
        self.computed += 1
        self._mem[key] = arr
        if target is not None:
            import io

            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            write_bytes_atomic(target, buf.getvalue())
        return arr

    def logmel(self, path: str | Path) -> np.ndarray:
        """The DCASE log-mel of a clip ([frames, 128]); unreadable audio -> DatasetError naming the file."""
        def compute(p: str) -> np.ndarray:
            try:
                return logmel(load_audio(p, sample_rate=SAMPLE_RATE))
            except AudiosimError as e:
                raise DatasetError(f"{p}: {e}") from None

        return self.get(path, "logmel:" + json.dumps(DCASE_LOGMEL.to_dict(), sort_keys=True), compute)
