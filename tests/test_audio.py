"""Audio loading: formats, rates, channels, and the defined outcome for every awkward input."""

from __future__ import annotations

import hashlib
import os
import tempfile

import librosa
import numpy as np
import pytest
import soundfile as sf

from audiosim.engine.audio import decode as audio_mod
from audiosim.engine.audio.decode import HashingReader, StreamResampler, load_audio, load_audio_hashed, open_audio, to_mono_float
from audiosim.errors import AudioDecodeError, AudioError, AudiosimError, EmptyAudioError, NonFiniteAudioError
from audiosim.files import sha256_file

SR = 16000


def _tone(sr, seconds=1.0, freq=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS"), ("wav", "FLOAT")])
@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_formats_and_rates_resample_to_target(tmp_path, ext, subtype, sr):
    p = tmp_path / f"x.{ext}"
    sf.write(p, _tone(sr), sr, subtype=subtype)
    y = load_audio(p, sample_rate=SR)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size - SR) <= 2
    assert np.abs(y).max() <= 1.0
    # the 440 Hz tone survives: dominant FFT bin at 440 Hz
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.fft.rfftfreq(y.size, 1 / SR)[spec.argmax()] - 440) < 3


def test_mp3_decodes(tmp_path):
    p = tmp_path / "x.mp3"
    try:
        sf.write(p, _tone(44100), 44100, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError) as e:  # libsndfile built without mp3
        pytest.skip(f"this libsndfile cannot write mp3: {e}")
    y = load_audio(p, sample_rate=SR)
    assert y.dtype == np.float32 and abs(y.size - SR) < SR * 0.1


def test_stereo_is_downmixed(tmp_path):
    left = _tone(SR)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, -left], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p, sample_rate=SR), 0.0, atol=1e-6)
    sf.write(p, np.stack([left, np.zeros_like(left)], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p, sample_rate=SR), left / 2, atol=1e-6)


def test_multichannel_and_out_of_range_float_clipped(tmp_path):
    x = np.stack([_tone(SR) * 4, _tone(SR) * 4, _tone(SR) * 4, _tone(SR) * 4], axis=1)
    p = tmp_path / "quad.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    y = load_audio(p, sample_rate=SR)
    assert y.max() == pytest.approx(1.0) and y.min() == pytest.approx(-1.0)


def test_empty_file_is_decode_error(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty file"):
        load_audio(p, sample_rate=SR)


def test_text_file_named_wav_is_decode_error(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioDecodeError):
        load_audio(p, sample_rate=SR)


def test_zero_sample_wav_is_empty_error(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, np.float32), SR)
    with pytest.raises(EmptyAudioError):
        load_audio(p, sample_rate=SR)


def test_nan_policy(tmp_path):
    x = _tone(SR)
    x[100:200] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="nan_policy"):
        load_audio(p, sample_rate=SR)
    y = load_audio(p, sample_rate=SR, nan_policy="zero")
    assert np.isfinite(y).all() and (y[100:200] == 0).all()


def test_truncated_wav_keeps_the_samples_present(tmp_path):
    p = tmp_path / "trunc.wav"
    sf.write(p, _tone(SR), SR, subtype="PCM_16")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # header still claims the full length
    y = load_audio(p, sample_rate=SR)
    assert 0 < y.size < SR and np.isfinite(y).all()


def test_truncated_header_is_decode_error(tmp_path):
    p = tmp_path / "hdr.wav"
    sf.write(p, _tone(SR), SR)
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(AudioDecodeError):
        load_audio(p, sample_rate=SR)


def test_silence_and_subframe_are_valid(tmp_path):
    p = tmp_path / "silent.wav"
    sf.write(p, np.zeros(SR // 100, np.float32), SR)
    y = load_audio(p, sample_rate=SR)
    assert y.size == SR // 100 and not y.any()


def test_errors_share_one_root():
    assert issubclass(AudioDecodeError, AudiosimError) and issubclass(NonFiniteAudioError, AudiosimError)
    with pytest.raises(AudiosimError):
        to_mono_float(np.zeros(0))


# ---------------------------------------------------------------------- streaming decode, hashing
def _noise(sr, seconds, channels=1, seed=0):
    x = 0.3 * np.random.default_rng(seed).standard_normal((int(sr * seconds), channels))
    return x.astype(np.float32)


@pytest.mark.parametrize("orig_sr", [8000, 11025, 22050, 44100, 48000, 96000, 12345])
def test_stream_resampler_equals_whole_signal_resampling(orig_sr, rng):
    for n in (1, 37, orig_sr // 3, 3 * orig_sr + 17):
        x = rng.uniform(-1, 1, n).astype(np.float32)
        want = np.clip(librosa.resample(x, orig_sr=orig_sr, target_sr=SR, res_type="soxr_hq"), -1, 1)
        rs = StreamResampler(orig_sr=orig_sr, target_sr=SR)
        parts, i = [], 0
        while i < n:
            step = int(rng.integers(1, 20_000))
            parts.append(rs.push(x[i:i + step]))
            i += step
        parts.append(rs.finish())
        got = np.concatenate(parts)
        assert got.shape == want.shape == (int(np.ceil(n * SR / orig_sr)),)
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS"), ("wav", "FLOAT")])
def test_open_audio_streams_the_whole_file_result_and_its_hash(tmp_path, ext, subtype):
    p = tmp_path / f"x.{ext}"
    x = _noise(44100, 12.5, channels=2)
    sf.write(p, x, 44100, subtype=subtype)
    with open_audio(p, sample_rate=SR, block_s=1.0) as stream:
        chunks = list(stream)
        assert len(chunks) >= 12 and stream.sha256 == sha256_file(p)
        assert stream.samples == sum(c.size for c in chunks) == int(np.ceil(12.5 * 44100 * SR / 44100))
    data, sr = sf.read(p, dtype="float32", always_2d=True)
    mono = np.clip(data.mean(axis=1, dtype=np.float32), -1, 1)
    want = np.clip(librosa.resample(mono, orig_sr=sr, target_sr=SR, res_type="soxr_hq"), -1, 1)
    np.testing.assert_allclose(np.concatenate(chunks), want, atol=1e-6)
    wave, digest = load_audio_hashed(p, sample_rate=SR)
    np.testing.assert_array_equal(wave, np.concatenate(chunks))
    assert digest == sha256_file(p)


def test_a_stream_is_read_once_and_its_hash_needs_the_end(tmp_path):
    p = tmp_path / "x.wav"
    sf.write(p, _tone(SR, 3.0), SR)
    stream = open_audio(p, sample_rate=SR, block_s=0.5)
    with pytest.raises(AudioError, match="read to the end"):
        _ = stream.sha256
    it = iter(stream)
    next(it)
    it.close()  # the consumer stopped early: no hash of a partial read
    with pytest.raises(AudioError, match="read to the end"):
        _ = stream.sha256
    with pytest.raises(AudioError, match="only once"):
        list(stream)


def test_hashing_reader_hashes_every_byte_in_order_whatever_the_reads(tmp_path, monkeypatch):
    data = np.random.default_rng(3).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    p = tmp_path / "blob.bin"
    p.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    for budget in (audio_mod.PENDING_BYTES, 10_000):  # out-of-order reads kept, or gaps read through the handle
        monkeypatch.setattr(audio_mod, "PENDING_BYTES", budget)
        r = HashingReader(p)
        r.seek(-4096, os.SEEK_END)
        assert r.read(4096) == data[-4096:]  # a length probe at the end first (as the Ogg reader does)
        r.seek(0)
        assert r.read(1000) == data[:1000]
        r.seek(500)
        assert r.read(2000) == data[500:2500]  # re-reads are harmless
        r.seek(1_000_000)
        buf = bytearray(70_000)
        assert r.readinto(buf) == 70_000 and bytes(buf) == data[1_000_000:1_070_000]  # skips a gap
        assert r.finish() == want
        r.close()


def test_hashing_reader_sees_the_file_as_it_was_when_opened(tmp_path):
    p = tmp_path / "grow.bin"
    p.write_bytes(b"a" * 1000)
    r = HashingReader(p)
    with open(p, "ab") as f:
        f.write(b"b" * 500)  # appended after the decoder opened the file: neither decoded nor hashed
    assert r.seek(0, os.SEEK_END) == 1000 and r.read(10) == b""
    assert r.finish() == hashlib.sha256(b"a" * 1000).hexdigest()
    r.close()


def test_the_hash_is_of_the_bytes_decoded_when_the_file_is_rewritten(tmp_path):
    # Rewritten in place (same inode) after the header was read: the decoder gets the old bytes it had
    # already read and the new bytes after them; the hash is of exactly that sequence, so it matches
    # neither version of the file and the next run sees a change.
    a, b = _noise(SR, 4.0, seed=1), _noise(SR, 4.0, seed=2)
    p, q = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(p, a, SR, subtype="FLOAT")
    sf.write(q, b, SR, subtype="FLOAT")
    old, new = p.read_bytes(), q.read_bytes()
    stream = open_audio(p, sample_rate=SR)  # header (and maybe a first buffer) read
    with open(p, "r+b") as f:
        f.write(new)
    wave = np.concatenate(list(stream))
    ca, cb = np.clip(a[:, 0], -1, 1), np.clip(b[:, 0], -1, 1)
    m = int(np.argmax(wave != ca)) if (wave != ca).any() else wave.size  # first sample from the new bytes
    np.testing.assert_array_equal(wave[:m], ca[:m])
    np.testing.assert_array_equal(wave[m:], cb[m:])
    k = len(old) - 4 * (a.shape[0] - m)  # byte offset of sample m (the data chunk ends the file)
    assert stream.sha256 == hashlib.sha256(old[:k] + new[k:]).hexdigest()
    # Replaced by a rename (an editor's atomic save): the open file is the old one, decoded and hashed as such.
    p.write_bytes(old)
    stream = open_audio(p, sample_rate=SR)
    os.replace(q, p)
    wave = np.concatenate(list(stream))
    np.testing.assert_array_equal(wave, ca)
    assert stream.sha256 == hashlib.sha256(old).hexdigest() != sha256_file(p)


def test_audioread_fallback_decodes_a_hashed_private_copy(tmp_path, monkeypatch):
    p = tmp_path / "x.wav"
    sf.write(p, _tone(22050, 2.0), 22050, subtype="PCM_16")
    want, want_sha = load_audio_hashed(p, sample_rate=SR)

    def refuse(*args, **kwargs):
        raise sf.LibsndfileError(0, prefix="pretend this format is unknown to libsndfile: ")

    monkeypatch.setattr(sf, "SoundFile", refuse)
    before = set(os.listdir(tempfile.gettempdir()))
    with open_audio(p, sample_rate=SR) as stream:
        assert stream.info.format == "audioread" and stream.info.sample_rate == 22050
        wave = np.concatenate(list(stream))
        assert stream.sha256 == want_sha
    np.testing.assert_allclose(wave, want, atol=1e-4)  # 16-bit samples scaled by 1/32768 either way
    assert {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("audiosim-decode-")} == set()
