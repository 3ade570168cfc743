"""The audio and the spectrogram picture of one item.

Audio (``GET .../items/{id}/audio``) — the decision:

* a **whole-file item** whose format browsers play (wav, flac, ogg/oga/opus, mp3, m4a) is served as
  the **original bytes** of the indexed file, with Range support: nothing is re-encoded, seeking
  reads only the requested bytes, and the ETag ties the answer to the indexed content hash and
  the file's size and mtime;
* a **segment item** (collections indexed with ``--segment``) is served as a **16-bit PCM WAV we
  encode** of exactly ``[offset_s, offset_s + duration_s)`` at the file's own sample rate and
  channel count, so the player plays what the vector describes; the same applies to whole files
  in formats browsers do not play (aiff, au, caf, wma). Encoded WAVs are kept in an LRU cache
  bounded in bytes and served with the same Range logic.

Spectrograms (``GET .../items/{id}/spectrogram.png``): a log-mel picture (magma colour map, low
frequencies at the bottom, 80 dB range) of the item's audio, ``width`` x ``height`` pixels, kept in
an LRU cache bounded in entries and keyed by item id and content hash (ids are never reused).

Both routes take an optional span, ``start`` and ``end`` in seconds of the item's file (as a region
hit's ``offset_s``/``end_s`` give them): the answer then covers exactly ``[start, end)`` of the file,
as an encoded WAV and a picture of that span, at most :data:`MAX_SPAN_S` long. Region hits carry
URLs with their span, so a player and a picture cover the whole region, not its best segment.

A file that has gone from disk since it was indexed raises :class:`Gone` (410).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from audiosim.engine.audio.decode import header_duration as file_duration  # noqa: F401  (the routes' name)
from audiosim.engine.audio.decode import read_span as _read_span
from audiosim.engine.audio.decode import resample, to_mono_float
from audiosim.errors import AudioDecodeError
from audiosim.service.errors import Gone

BROWSER_TYPES = {
    ".wav": "audio/wav", ".wave": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
    ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".m4a": "audio/mp4",
}
SPECTROGRAM_SR = 16000


class LruBytes:
    """A thread-safe LRU of bytes values bounded by total size and by entry count."""

    def __init__(self, *, max_bytes: int, max_entries: int = 100_000) -> None:
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            value = self._d.get(key)
            if value is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._d[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes or len(self._d) > self.max_entries:
                _, dropped = self._d.popitem(last=False)
                self._bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._d)


def require_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise Gone(f"the indexed file {p.name} is no longer on disk; re-index the collection "
                   "(`audiosim index FOLDER --collection DIR --prune`)")
    return p


def serves_original(path: Path, *, segment: bool) -> bool:
    """True when the item's audio is sent as the file's own bytes (see the module docstring)."""
    return not segment and path.suffix.lower() in BROWSER_TYPES


MAX_SPAN_S = 600.0  # the longest span (start/end) the item routes encode or draw in one answer


def read_span(path: Path, *, offset_s: float = 0.0, duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Samples ``[n, channels]`` float32 of a span at the file's own rate, decoded by the library
    (:func:`audiosim.engine.audio.decode.read_span`: ingest's size and duration limits hold)."""
    try:
        return _read_span(path, offset_s=offset_s, duration_s=duration_s)
    except AudioDecodeError as e:
        raise AudioDecodeError(f"cannot decode {Path(path).name} to serve it: {str(e).split(': ', 1)[-1]}") from e


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of ``samples`` ([n] or [n, channels], float in [-1, 1])."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def spectrogram_png(wave: np.ndarray, sample_rate: int, *, width: int = 320, height: int = 96) -> bytes:
    """A ``width`` x ``height`` log-mel PNG of mono ``wave`` (80 dB range, magma, low frequencies at the bottom)."""
    import librosa
    import matplotlib
    from PIL import Image

    n_fft = 1024 if sample_rate > 24000 else 512
    x = np.asarray(wave, dtype=np.float32)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    hop = max(64, int(np.ceil(x.size / width)))
    power = librosa.feature.melspectrogram(y=x, sr=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=height,
                                           fmin=20.0, fmax=sample_rate / 2)
    db = librosa.power_to_db(power, ref=max(float(power.max()), 1e-10), top_db=80.0)
    img = np.clip((db + 80.0) / 80.0, 0.0, 1.0)[::-1]
    cols = np.linspace(0, img.shape[1] - 1, width).round().astype(int)
    rgba = matplotlib.colormaps["magma"](img[:, cols], bytes=True)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(buf, format="PNG")
    return buf.getvalue()


def mono_at(samples: np.ndarray, sample_rate: int, target_sr: int) -> np.ndarray:
    return resample(to_mono_float(samples, nan_policy="zero"), orig_sr=sample_rate, target_sr=target_sr)
