"""Decode any audio file to mono float32 at a requested sample rate, in bounded memory.

Two ways in, one decoder:

* :func:`open_audio` returns an :class:`AudioStream`: iterate it for mono float32 chunks in
  [-1, 1] at ``sample_rate`` (one per decoded block of about ``block_s`` seconds, at most
  :data:`BLOCK_BYTES` of native samples), then read :attr:`AudioStream.sha256`. Memory stays
  bounded whatever the file's length: one native block, its mono down-mix and the resampler's
  state. :func:`audiosim.engine.audio.streaming.embed_file` builds on it to embed hour-long files.
* :func:`load_audio` concatenates those chunks (the whole file at ``sample_rate``);
  :func:`load_audio_hashed` also returns the file's sha256.

**Hash what you decode.** libsndfile reads the file through a :class:`HashingReader`: every byte
the decoder reads is fed to sha256 in file order at the moment it is read (a region skipped by a
seek is read through the same file handle when the hash reaches it; an out-of-order read such as
an Ogg length probe near the end is kept until then). When the stream ends, the rest of the file,
up to its length at open time, is hashed through the same handle. So ``sha256`` is the
``sha256sum`` of the file as the decoder saw it, and a file rewritten on disk during a run
yields the hash of the bytes that were actually decoded, never the hash of other bytes. Formats
libsndfile cannot read (m4a, wma, ...) go through audioread, which opens files by name: they are
first copied to a private temporary file while being hashed, and the copy is decoded.

**Resampling** is soxr's HQ filter (the one ``librosa.resample(res_type="soxr_hq")`` uses) run
as a stream (``soxr.ResampleStream``); its output equals the one-shot resampling of the whole
file sample for sample, and its length is ``ceil(n * target / native)`` as librosa's is.

**Limits, checked on the header before any sample is allocated** (:class:`AudioLimitError`,
naming the file, the value and the limit):

* sample rate within [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`] = [1 kHz, 768 kHz]:
  8 kHz telephony is the lowest rate in real use and 768 kHz the highest any PCM interface
  offers (ultrasound recorders use 250-500 kHz); a header outside that range is corrupt or
  hostile (a 2 MB WAV claiming 16 Hz would otherwise resample to 18 hours at 16 kHz);
* at most :data:`MAX_CHANNELS` = 256 channels (large microphone arrays use 64);
* a claimed duration (frames / rate) of at most ``max_duration_s`` (default
  :data:`DEFAULT_MAX_DURATION_S` = 6 h; ``None`` lifts the limit). A FLAC header can claim
  2^36 frames in 42 bytes. Streaming keeps decoding bounded for any length, but the frame
  embeddings of a file grow with it: 6 h of 2048-d PANNs frames every 0.5 s is 350 MB.

Defined outcomes for awkward input:

* a file that libsndfile/audioread cannot decode (zero bytes, text, truncated header)
  raises :class:`AudioDecodeError`;
* a file that decodes to zero samples raises :class:`EmptyAudioError`;
* NaN or infinite samples raise :class:`NonFiniteAudioError` (``nan_policy="error"``) or are
  replaced by zeros (``nan_policy="zero"``);
* ``MemoryError`` while decoding becomes :class:`AudioMemoryError` for that file;
* silence and clips shorter than an embedder's window are valid: embedders pad them;
* samples outside [-1, 1] (float files may hold them) are clipped, before and after resampling;
* a truncated file whose header claims more samples than it holds yields the samples present.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.errors import (AudioDecodeError, AudioError, AudioLimitError, AudioMemoryError, EmptyAudioError,
                             NonFiniteAudioError)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".m4a", ".wma", ".caf"}
)
NAN_POLICIES = ("error", "zero")
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 256
DEFAULT_MAX_DURATION_S = 6 * 3600.0
BLOCK_BYTES = 4 << 20  # native float32 samples decoded per block, all channels together
HASH_CHUNK = 1 << 20
PENDING_BYTES = 8 << 20  # out-of-order reads kept for the hash before a gap is read instead
RESAMPLE_QUALITY = "HQ"  # soxr's quality name for librosa's res_type="soxr_hq"


def is_audio_path(path: str | Path) -> bool:
    """True when the file name has an extension audiosim tries to decode."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


@dataclass(frozen=True)
class AudioInfo:
    """What a header says about a recording (``frames`` is None when the header does not say)."""

    path: str
    sample_rate: int
    channels: int
    frames: int | None
    format: str
    subtype: str = ""

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate


def check_limits(info: AudioInfo, *, max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> AudioInfo:
    """Raise :class:`AudioLimitError` when the header's rate, channels or duration is out of range."""
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise AudioLimitError(
            f"{info.path}: the header claims a sample rate of {info.sample_rate} Hz, outside the accepted "
            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz; the file is corrupt or not what it claims (re-export it)"
        )
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioLimitError(
            f"{info.path}: the header claims {info.channels} channels, outside the accepted 1..{MAX_CHANNELS}; "
            "the file is corrupt or not what it claims (re-export it)"
        )
    if max_duration_s is not None and info.frames is not None and info.frames / info.sample_rate > max_duration_s:
        raise AudioLimitError(
            f"{info.path}: the header claims {info.frames} frames at {info.sample_rate} Hz "
            f"({info.frames / info.sample_rate:.0f} s), more than max_duration_s={max_duration_s:g} s; "
            "raise the limit (--max-duration SECONDS) if the recording really is that long, or split it"
        )
    return info


def to_mono_float(samples: np.ndarray, *, nan_policy: str = "error", source: str = "waveform") -> np.ndarray:
    """Down-mix ``samples`` ([n] or [n, channels]) to mono float32, checked and clipped to [-1, 1]."""
    x = _mono_block(samples, nan_policy=nan_policy, source=source)
    if x.size == 0:
        raise EmptyAudioError(f"{source} contains no samples")
    return x


def _check_nan_policy(nan_policy: str) -> None:
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")


def _mono_block(samples: np.ndarray, *, nan_policy: str, source: str, offset_s: float | None = None) -> np.ndarray:
    _check_nan_policy(nan_policy)
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    elif x.ndim != 1:
        raise AudioDecodeError(f"{source}: expected samples shaped [n] or [n, channels], got {x.shape}")
    finite = np.isfinite(x)
    if not finite.all():
        if nan_policy == "error":
            bad = int((~finite).sum())
            where = "" if offset_s is None else f" (from {offset_s:.2f} s)"
            raise NonFiniteAudioError(
                f"{source} contains {bad} NaN/infinite samples{where}; repair the file or pass nan_policy='zero'"
            )
        x = np.where(finite, x, np.float32(0.0))
    return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)


def resample(x: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality resampling of a whole signal (soxr HQ via librosa); identity when the rates match."""
    if orig_sr == target_sr:
        return x
    import librosa

    y = librosa.resample(x, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")
    return np.clip(y, -1.0, 1.0).astype(np.float32, copy=False)


class StreamResampler:
    """``resample`` applied chunk by chunk: the concatenated output equals the whole-signal result.

    ``push(x)`` returns the output samples that are ready; ``finish()`` flushes the filter and
    trims or zero-pads the total to ``ceil(n_in * target / orig)``, as ``librosa.resample`` does.
    """

    def __init__(self, *, orig_sr: int, target_sr: int) -> None:
        self.orig_sr, self.target_sr = int(orig_sr), int(target_sr)
        self.n_in = self.n_out = 0
        self._soxr = None
        if self.orig_sr != self.target_sr:
            import soxr

            self._soxr = soxr.ResampleStream(self.orig_sr, self.target_sr, 1, dtype="float32", quality=RESAMPLE_QUALITY)

    def _emit(self, y: np.ndarray, *, limit: int | None = None) -> np.ndarray:
        if limit is not None and self.n_out + y.size > limit:
            y = y[: max(limit - self.n_out, 0)]
        self.n_out += y.size
        return np.clip(y, -1.0, 1.0).astype(np.float32, copy=False)

    def push(self, x: np.ndarray) -> np.ndarray:
        self.n_in += x.size
        if self._soxr is None:
            return self._emit(x)
        return self._emit(self._soxr.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=False))

    def finish(self) -> np.ndarray:
        if self._soxr is None:
            return np.zeros(0, dtype=np.float32)
        want = math.ceil(self.n_in * self.target_sr / self.orig_sr)
        tail = self._emit(self._soxr.resample_chunk(np.zeros(0, dtype=np.float32), last=True), limit=want)
        if self.n_out < want:
            pad = np.zeros(want - self.n_out, dtype=np.float32)
            self.n_out = want
            tail = np.concatenate([tail, pad])
        return tail


class HashingReader(io.RawIOBase):
    """A read-only file wrapper that feeds sha256 with exactly the bytes a decoder reads.

    Bytes enter the hash in file order. A read ahead of the hashed prefix is kept (up to
    :data:`PENDING_BYTES`) until the prefix reaches it; past that budget the gap is read through
    the same handle. The file looks :attr:`size` bytes long (its length when opened), so bytes
    appended later are neither decoded nor hashed. :meth:`finish` hashes the unread rest and
    returns the hex digest.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self._f = open(path, "rb")
        self.size = os.fstat(self._f.fileno()).st_size
        self._pos = 0
        self._hash = hashlib.sha256()
        self._done = 0  # bytes [0, _done) are in the hash
        self._pending: dict[int, bytes] = {}
        self._pending_bytes = 0
        self._digest: str | None = None

    def __repr__(self) -> str:  # soundfile names the file by its repr in error messages
        return repr(self._f.name)

    # -- file protocol used by soundfile's virtual IO
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + int(offset))
        return self._pos

    def read(self, n: int = -1) -> bytes:
        want = self.size - self._pos if n is None or n < 0 else min(n, max(self.size - self._pos, 0))
        if want <= 0:
            return b""
        self._f.seek(self._pos)
        data = self._f.read(want)
        self._account(self._pos, data)
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()

    # -- hashing
    def _feed(self, pos: int, data: bytes) -> None:
        """Hash the part of ``data`` (read at ``pos``) beyond the hashed prefix, if it touches it."""
        end = pos + len(data)
        if pos <= self._done < end:
            self._hash.update(memoryview(data)[self._done - pos:])
            self._done = end

    def _drain(self) -> None:
        progress = True
        while progress and self._pending:
            progress = False
            for pos in sorted(self._pending):
                if pos > self._done:
                    break
                data = self._pending.pop(pos)
                self._pending_bytes -= len(data)
                self._feed(pos, data)
                progress = True

    def _account(self, pos: int, data: bytes) -> None:
        if not data or pos + len(data) <= self._done:
            return
        if pos <= self._done:
            self._feed(pos, data)
            self._drain()
            return
        prev = self._pending.get(pos, b"")
        if len(data) > len(prev):
            self._pending[pos] = bytes(data)
            self._pending_bytes += len(data) - len(prev)
        if self._pending_bytes > PENDING_BYTES:
            self._fill(min(self._pending))

    def _fill(self, target: int) -> None:
        """Hash the file's bytes from the hashed prefix up to ``target`` (pending reads first)."""
        target = min(target, self.size)
        while self._done < target:
            self._drain()
            if self._done >= target:
                break
            nxt = min((p for p in self._pending if p > self._done), default=target)
            stop = min(nxt, target, self._done + HASH_CHUNK)
            self._f.seek(self._done)
            data = self._f.read(stop - self._done)
            if not data:  # the file shrank under us: hash what exists
                break
            self._feed(self._done, data)
        self._drain()

    def finish(self) -> str:
        """Hash the rest of the file (up to :attr:`size`) and return the hex digest."""
        if self._digest is None:
            self._fill(self.size)
            self._digest = self._hash.hexdigest()
        return self._digest


def _reason(error: BaseException) -> str:
    """A decoder's error as a short clause: no "Error opening 'PATH':" prefix, no final period, never empty."""
    text = " ".join(str(error).split())
    if text.startswith("Error opening ") and ": " in text:
        text = text.split(": ", 1)[1]
    text = text.rstrip(". ")
    if not text:  # audioread's NoBackendError carries no text
        name = type(error).__name__
        text = "no installed decoder reads it" if name == "NoBackendError" else name
    return text[:1].lower() + text[1:]


def decode_failure_message(path: str | Path, libsndfile_error: BaseException, fallback_error: BaseException) -> str:
    """One clean sentence for a file neither libsndfile nor audioread could open, naming the fix."""
    return (f"cannot decode {path}: not a readable audio file (libsndfile: {_reason(libsndfile_error)}; "
            f"audioread: {_reason(fallback_error)}). Check the file is a complete audio file (wav, flac, ogg, mp3, ...), "
            "or convert it, e.g. ffmpeg -i INPUT output.wav")


def _copy_hashed(path: Path, dest: Path) -> str:
    """Copy ``path`` to ``dest`` through one read of each byte; return the sha256 of what was copied."""
    h = hashlib.sha256()
    with open(path, "rb") as src, open(dest, "wb") as out:
        for chunk in iter(lambda: src.read(HASH_CHUNK), b""):
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


class AudioStream:
    """An open recording: iterate it once for mono float32 chunks at :attr:`sample_rate`.

    :attr:`info` holds the checked header; :attr:`sha256` is known once the iteration ends;
    :attr:`samples` counts the output samples so far. Use it as a context manager (or call
    :meth:`close`) to release the file early.
    """

    def __init__(self, path: Path, *, sample_rate: int, nan_policy: str, max_duration_s: float | None,
                 block_s: float) -> None:
        self.path = path
        self.sample_rate = int(sample_rate)
        self.nan_policy = nan_policy
        self.samples = 0
        self._block_s = float(block_s)
        self._sha256: str | None = None
        self._reader: HashingReader | None = None
        self._sf = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._audioread = None
        self._started = self._exhausted = False
        try:
            self.info = self._open(max_duration_s)
        except BaseException:
            self.close()
            raise

    # -- opening
    def _open(self, max_duration_s: float | None) -> AudioInfo:
        import soundfile as sf

        self._reader = HashingReader(self.path)
        try:
            self._sf = sf.SoundFile(self._reader)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as sf_error:
            self._reader.close()
            self._reader = None
            return self._open_audioread(max_duration_s, sf_error)
        frames = int(self._sf.frames) if 0 <= self._sf.frames < (1 << 62) else None
        info = AudioInfo(path=str(self.path), sample_rate=int(self._sf.samplerate), channels=int(self._sf.channels),
                         frames=frames, format=str(self._sf.format), subtype=str(self._sf.subtype))
        return check_limits(info, max_duration_s=max_duration_s)

    def _open_audioread(self, max_duration_s: float | None, first_error: Exception) -> AudioInfo:
        """Formats libsndfile does not read: a hashed private copy decoded by audioread."""
        try:
            import audioread

            self._tmpdir = tempfile.TemporaryDirectory(prefix="audiosim-decode-")
            copy = Path(self._tmpdir.name) / ("audio" + self.path.suffix.lower())
            self._sha256 = _copy_hashed(self.path, copy)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._audioread = audioread.audio_open(str(copy))
            sr, channels, duration = int(self._audioread.samplerate), int(self._audioread.channels), self._audioread.duration
        except OSError as e:
            raise AudioDecodeError(f"cannot read {self.path}: {e}") from e
        except Exception as fallback_error:  # audioread raises many unrelated types
            raise AudioDecodeError(decode_failure_message(self.path, first_error, fallback_error)) from fallback_error
        frames = math.ceil(duration * sr) if duration and math.isfinite(duration) and sr > 0 else None
        info = AudioInfo(path=str(self.path), sample_rate=sr, channels=channels, frames=frames, format="audioread")
        return check_limits(info, max_duration_s=max_duration_s)

    # -- decoding
    def _native_blocks(self) -> Iterator[np.ndarray]:
        """[n, channels] float32 blocks of at most BLOCK_BYTES."""
        channels = self.info.channels
        per_block = max(1024, min(int(self._block_s * self.info.sample_rate), BLOCK_BYTES // (4 * channels)))
        if self._sf is not None:
            import soundfile as sf

            while True:
                try:
                    block = self._sf.read(per_block, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError, ValueError) as e:
                    raise AudioDecodeError(f"cannot decode {self.path} after {self.samples} output samples: {e}; "
                                           "the file is damaged (re-export it)") from e
                if block.shape[0] == 0:
                    return
                yield block
        scale = np.float32(1.0 / 32768.0)
        try:
            for buf in self._audioread:
                ints = np.frombuffer(buf, dtype="<i2")
                usable = ints.size - ints.size % channels
                yield (ints[:usable].astype(np.float32) * scale).reshape(-1, channels)
        except Exception as e:  # audioread backends raise many unrelated types
            raise AudioDecodeError(f"cannot decode {self.path}: {e}; the file is damaged (re-export it)") from e

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._started:
            raise AudioError(f"the audio stream of {self.path} can be read only once; open it again")
        self._started = True
        try:
            yield from self._chunks()
        except MemoryError as e:
            raise AudioMemoryError(
                f"{self.path}: out of memory while decoding ({self.info.channels} channels at "
                f"{self.info.sample_rate} Hz); free memory or lower the decode block (block_s)"
            ) from e
        finally:
            self.close()

    def _chunks(self) -> Iterator[np.ndarray]:
        resampler = StreamResampler(orig_sr=self.info.sample_rate, target_sr=self.sample_rate)
        native = 0
        for block in self._native_blocks():
            mono = _mono_block(block, nan_policy=self.nan_policy, source=str(self.path),
                               offset_s=native / self.info.sample_rate)
            native += mono.size
            out = resampler.push(mono)
            if out.size:
                self.samples += out.size
                yield out
        if native == 0:
            raise EmptyAudioError(f"{self.path} contains no samples")
        tail = resampler.finish()
        if self._reader is not None:
            self._sha256 = self._reader.finish()
        self._exhausted = True
        if tail.size:
            self.samples += tail.size
            yield tail

    @property
    def sha256(self) -> str:
        """sha256 of the bytes decoded (the whole file as read); known once the stream is exhausted."""
        if self._sha256 is None or not self._exhausted:
            raise AudioError(f"the sha256 of {self.path} is known once its audio stream has been read to the end")
        return self._sha256

    @property
    def duration_s(self) -> float:
        """Seconds of audio emitted so far (all of it once exhausted)."""
        return self.samples / self.sample_rate

    def read_all(self) -> np.ndarray:
        """The whole recording as one array (memory grows with the file; prefer iterating)."""
        parts = list(self)
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def close(self) -> None:
        if self._sf is not None:
            try:
                self._sf.close()
            except (RuntimeError, OSError, ValueError):  # a failed close must not mask the error being raised
                pass
            self._sf = None
        if self._reader is not None:
            self._reader.close()
        if self._audioread is not None:
            try:
                self._audioread.close()
            except (RuntimeError, OSError, ValueError):  # same: best-effort release
                pass
            self._audioread = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_audio(path: str | Path, *, sample_rate: int, nan_policy: str = "error",
               max_duration_s: float | None = DEFAULT_MAX_DURATION_S, block_s: float = 10.0) -> AudioStream:
    """Open ``path`` for streaming decode to mono float32 at ``sample_rate`` Hz (see the module docstring).

    The header is read and checked here (:class:`AudioLimitError`, :class:`AudioDecodeError`);
    samples are decoded only while the returned stream is iterated.
    """
    _check_nan_policy(nan_policy)
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be within {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {sample_rate}")
    if not block_s > 0:
        raise ValueError(f"block_s must be > 0, got {block_s}")
    p = Path(path)
    if not p.is_file():
        raise AudioDecodeError(f"{p} does not exist or is not a file")
    try:
        if p.stat().st_size == 0:
            raise AudioDecodeError(f"{p} is an empty file (0 bytes)")
        return AudioStream(p, sample_rate=sample_rate, nan_policy=nan_policy, max_duration_s=max_duration_s,
                           block_s=block_s)
    except MemoryError as e:
        raise AudioMemoryError(f"{p}: out of memory while opening it") from e
    except OSError as e:
        raise AudioDecodeError(f"cannot read {p}: {e}") from e


def load_audio_hashed(path: str | Path, *, sample_rate: int, nan_policy: str = "error",
                      max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> tuple[np.ndarray, str]:
    """``(waveform, sha256 of exactly the bytes decoded)``; the waveform as :func:`load_audio` returns it."""
    with open_audio(path, sample_rate=sample_rate, nan_policy=nan_policy, max_duration_s=max_duration_s) as stream:
        try:
            wave = stream.read_all()
        except MemoryError as e:
            raise AudioMemoryError(f"{path}: out of memory holding the decoded waveform "
                                   f"({stream.duration_s:.0f} s so far); lower max_duration_s") from e
        return wave, stream.sha256


def load_audio(path: str | Path, *, sample_rate: int, nan_policy: str = "error",
               max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> np.ndarray:
    """Decode ``path`` to mono float32 in [-1, 1] at ``sample_rate`` Hz."""
    return load_audio_hashed(path, sample_rate=sample_rate, nan_policy=nan_policy, max_duration_s=max_duration_s)[0]


def header_duration(path: str | Path) -> float | None:
    """Seconds of audio in ``path`` from its header (libsndfile), or ``None`` when only a full decode would tell."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    return float(info.frames) / float(info.samplerate) if info.samplerate else None


def read_span(path: str | Path, *, offset_s: float = 0.0, duration_s: float | None = None,
              max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> tuple[np.ndarray, int]:
    """Samples ``[n, channels]`` float32 of ``[offset_s, offset_s + duration_s)`` at the file's own rate, and the rate.

    For playing back a stored item (the service): the header is checked against the same limits
    as ingest (:func:`check_limits`: rate, channels, ``max_duration_s``), and formats libsndfile
    does not read go through audioread, as ingest does, decoding at most ``max_duration_s``.
    """
    import soundfile as sf

    p = Path(path)
    try:
        with sf.SoundFile(str(p)) as f:
            frames_total = int(f.frames) if 0 <= f.frames < (1 << 62) else None
            check_limits(AudioInfo(path=str(p), sample_rate=int(f.samplerate), channels=int(f.channels),
                                   frames=frames_total, format=str(f.format), subtype=str(f.subtype)),
                         max_duration_s=max_duration_s)
            sr = int(f.samplerate)
            start = min(int(round(offset_s * sr)), f.frames)
            frames = -1 if duration_s is None else int(round(duration_s * sr))
            f.seek(start)
            data = f.read(frames=frames, dtype="float32", always_2d=True)
        return data, sr
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        pass
    if duration_s is None and max_duration_s is not None:
        duration_s = max_duration_s  # audioread headers do not tell the length: decode no more than the limit
    try:
        import warnings

        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(p), sr=None, mono=False, offset=offset_s, duration=duration_s, dtype=np.float32)
    except Exception as e:  # audioread raises many unrelated types
        raise AudioDecodeError(f"cannot decode {p.name}: {e}") from e
    y = y.T if y.ndim > 1 else y[:, None]
    check_limits(AudioInfo(path=str(p), sample_rate=int(sr), channels=int(y.shape[1]), frames=None, format="audioread"),
                 max_duration_s=max_duration_s)
    return np.ascontiguousarray(y, dtype=np.float32), int(sr)
