"""One decoder: the service plays items back through engine/audio's read_span, under ingest's limits."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audiosim.engine.audio import decode
from audiosim.errors import AudioDecodeError, AudioLimitError
from audiosim.service import media


@pytest.fixture
def synthetic_stereo(tmp_path):
    sr = 8000
    t = np.arange(2 * sr) / sr
    x = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)], axis=1).astype(np.float32)
    p = tmp_path / "synthetic_stereo.wav"
    sf.write(p, x, sr, subtype="FLOAT")
    return p, x, sr


def test_span_at_the_files_own_rate_and_channels(synthetic_stereo):
    p, x, sr = synthetic_stereo
    y, got_sr = decode.read_span(p, offset_s=0.5, duration_s=0.25)
    assert got_sr == sr and y.shape == (2000, 2) and np.array_equal(y, x[4000:6000])
    assert decode.header_duration(p) == 2.0
    assert media.file_duration(p) == 2.0 and np.array_equal(media.read_span(p, offset_s=0.5, duration_s=0.25)[0], y)


def test_the_limits_of_ingest_hold(synthetic_stereo, tmp_path, monkeypatch):
    p, _, _ = synthetic_stereo
    with pytest.raises(AudioLimitError, match="more than max_duration_s=1 s"):
        decode.read_span(p, max_duration_s=1.0)
    monkeypatch.setattr(decode, "DEFAULT_MAX_DURATION_S", 1.0)
    monkeypatch.setattr(decode.read_span, "__kwdefaults__", {**decode.read_span.__kwdefaults__, "max_duration_s": 1.0})
    with pytest.raises(AudioLimitError):  # the service's own read goes through the same check
        media.read_span(p)
    bad = tmp_path / "synthetic_not_audio.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk" * 4)
    with pytest.raises(AudioDecodeError, match="to serve it"):
        media.read_span(bad)
