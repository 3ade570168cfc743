"""Hostile headers are refused per file before any sample is allocated, with a typed error naming the file
and the limit; MemoryError becomes a typed per-file error; random header damage never escapes as an
untyped exception."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from audiosim.engine.audio import decode as audio_mod
from audiosim.engine.audio.decode import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioLimitError, AudioMemoryError, load_audio, open_audio
from audiosim.engine.models.embedders import make_embedder
from audiosim.engine.audio.streaming import embed_file
from audiosim.errors import AudioDecodeError, AudioError, EmptyAudioError

SR = 16000


def _wav(path, *, seconds=2.0, sr=44100, subtype="PCM_16"):
    x = (0.2 * np.random.default_rng(0).standard_normal(int(sr * seconds))).astype(np.float32)
    sf.write(path, x, sr, subtype=subtype)
    return path


def _patch_wav(path, *, rate=None, channels=None, data_size=None):
    """Rewrite fields of a canonical 44-byte-header PCM WAV (fmt at 12, data at 36)."""
    b = bytearray(path.read_bytes())
    assert b[12:16] == b"fmt " and b[36:40] == b"data"
    if rate is not None:
        block_align = struct.unpack("<H", b[32:34])[0]
        b[24:28] = struct.pack("<I", rate)
        b[28:32] = struct.pack("<I", (rate * block_align) & 0xFFFFFFFF)
    if channels is not None:
        b[22:24] = struct.pack("<H", channels)
    if data_size is not None:
        b[40:44] = struct.pack("<I", data_size)
    path.write_bytes(bytes(b))
    return path


def _patch_flac_total(path, total):
    """Set the 36-bit total-samples field of a FLAC STREAMINFO block (bytes 18..25 of the file)."""
    b = bytearray(path.read_bytes())
    assert b[:4] == b"fLaC"
    bits = int.from_bytes(b[18:26], "big")
    bits = (bits & ~((1 << 36) - 1)) | total
    b[18:26] = bits.to_bytes(8, "big")
    path.write_bytes(bytes(b))
    return path


@pytest.mark.parametrize("rate", [0, 1, 16, 999, 768_001, 4_000_000_000])
def test_absurd_sample_rates_are_refused_naming_file_and_limit(tmp_path, rate):
    p = _patch_wav(_wav(tmp_path / "x.wav"), rate=rate)
    with pytest.raises(AudioError) as e:
        load_audio(p, sample_rate=SR)
    assert str(p) in str(e.value)
    if rate:  # rate 0 is refused by libsndfile itself ("SF_INFO struct incomplete")
        assert isinstance(e.value, AudioLimitError)
        assert f"{rate} Hz" in str(e.value) and f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz" in str(e.value)


@pytest.mark.parametrize("rate", [MIN_SAMPLE_RATE, 8000, 96_000, MAX_SAMPLE_RATE])
def test_rates_inside_the_range_decode(tmp_path, rate):
    p = _patch_wav(_wav(tmp_path / "x.wav", seconds=0.5), rate=rate)
    n = int(0.5 * 44100)
    assert load_audio(p, sample_rate=SR).size == int(np.ceil(n * SR / rate))


def test_the_refusal_happens_before_any_allocation(tmp_path):
    # A 2 MB WAV claiming 16 Hz used to resample to 18 hours at 16 kHz (8 GB). Refused on the header:
    # the whole attempt allocates less than 1 MB.
    p = _patch_wav(_wav(tmp_path / "x.wav", seconds=22.7), rate=16)
    assert p.stat().st_size > 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(AudioLimitError):
            load_audio(p, sample_rate=SR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


def test_huge_claimed_frame_counts_are_refused_by_max_duration(tmp_path):
    p = _patch_flac_total(_wav(tmp_path / "x.flac", seconds=1.0), (1 << 36) - 1)
    assert sf.info(str(p)).frames == (1 << 36) - 1  # libsndfile believes the header
    with pytest.raises(AudioLimitError, match=r"68719476735 frames at 44100 Hz .*max_duration_s=21600 s.*--max-duration"):
        open_audio(p, sample_rate=SR)
    # Without the limit the header is accepted, and streaming never allocates for the claimed length:
    # libsndfile then fails on the inconsistent file, a typed error for this file only.
    tracemalloc.start()
    try:
        with pytest.raises(AudioDecodeError, match=f"cannot decode {p}"):
            load_audio(p, sample_rate=SR, max_duration_s=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, peak


def test_max_duration_is_a_per_call_option(tmp_path):
    p = _wav(tmp_path / "x.wav", seconds=3.0)
    assert load_audio(p, sample_rate=SR, max_duration_s=3.0).size == 3 * SR
    with pytest.raises(AudioLimitError, match="max_duration_s=2.5 s"):
        load_audio(p, sample_rate=SR, max_duration_s=2.5)
    with pytest.raises(AudioLimitError, match="max_duration_s=2.5"):
        embed_file(make_embedder("logmel"), p, max_duration_s=2.5)


def test_absurd_channel_counts_are_refused(tmp_path):
    p = _patch_wav(_wav(tmp_path / "x.wav"), channels=65535)
    with pytest.raises(AudioError) as e:  # libsndfile or audiosim's limit, whichever reads the header first
        load_audio(p, sample_rate=SR)
    assert str(p) in str(e.value) and ("channels" in str(e.value).lower())


def test_a_data_size_beyond_the_file_yields_the_samples_present(tmp_path):
    p = _patch_wav(_wav(tmp_path / "x.wav", seconds=1.0), data_size=0xFFFFFFF0)
    assert load_audio(p, sample_rate=SR).size == SR


def test_memory_error_while_decoding_is_a_typed_per_file_error(tmp_path, monkeypatch):
    p = _wav(tmp_path / "x.wav")

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(audio_mod, "_mono_block", exhausted)
    with pytest.raises(AudioMemoryError, match=f"{p}: out of memory while decoding"):
        load_audio(p, sample_rate=SR)


def test_memory_error_while_embedding_is_a_typed_per_file_error(tmp_path, monkeypatch):
    p = _wav(tmp_path / "x.wav")
    emb = make_embedder("logmel")

    def exhausted(waveform):
        raise MemoryError

    monkeypatch.setattr(emb, "embed_frames", exhausted)
    with pytest.raises(AudioMemoryError, match=f"{p}: out of memory while embedding it with logmel"):
        embed_file(emb, p)


def test_random_header_damage_gives_success_or_a_typed_audio_error(tmp_path):
    # 300 WAV/FLAC files with 1-4 random bytes of their first 64 replaced: every outcome is decoded audio or
    # an AudioError subclass naming the file -- never another exception type, never a crash.
    rng = np.random.default_rng(11)
    sources = [_wav(tmp_path / "src.wav", seconds=0.3), _wav(tmp_path / "src.flac", seconds=0.3)]
    outcomes = {"decoded": 0, "refused": 0}
    for i in range(300):
        src = sources[i % 2]
        b = bytearray(src.read_bytes())
        for _ in range(int(rng.integers(1, 5))):
            b[int(rng.integers(0, 64))] = int(rng.integers(0, 256))
        p = tmp_path / f"h{i}{src.suffix}"
        p.write_bytes(bytes(b))
        try:
            wave = load_audio(p, sample_rate=SR, max_duration_s=3600)
            assert wave.dtype == np.float32 and np.isfinite(wave).all() and np.abs(wave).max() <= 1.0
            outcomes["decoded"] += 1
        except AudioError as e:
            assert str(p) in str(e)
            outcomes["refused"] += 1
        p.unlink()
    assert sum(outcomes.values()) == 300 and outcomes["refused"] > 0 and outcomes["decoded"] > 0, outcomes


def test_truncated_headers_are_typed_errors(tmp_path):
    p = _wav(tmp_path / "x.wav")
    data = p.read_bytes()
    for n in (0, 4, 12, 20, 36):
        q = tmp_path / f"t{n}.wav"
        q.write_bytes(data[:n])
        with pytest.raises(AudioDecodeError):
            load_audio(q, sample_rate=SR)
    q = tmp_path / "t44.wav"
    q.write_bytes(data[:44])  # a complete header and no samples
    with pytest.raises(EmptyAudioError, match="contains no samples"):
        load_audio(q, sample_rate=SR)
