"""The ``voice`` embedder: resemblyzer's real GE2E weights, its own network and mel front end as oracles,
two generated speakers told apart, ESC-50 recordings embedded."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from audiosim.engine.models.embedders import get_embedder
from audiosim.engine.audio.voices import speaker_clip
from audiosim.engine.models.embedders.voice import packaged_weights
from audiosim.errors import WeightsFormatError, WeightsNotFoundError

torch = pytest.importorskip("torch")
if packaged_weights() is None:
    pytest.skip("resemblyzer is not installed: pip install --no-deps resemblyzer (make install-test does)",
                allow_module_level=True)

SR = 16000


@pytest.fixture(scope="module")
def voice():
    return get_embedder("voice")


@pytest.fixture(scope="module")
def resemblyzer_modules():
    """resemblyzer's own modules, imported with a stand-in for webrtcvad (used only by its VAD, not called here)."""
    saved = sys.modules.get("webrtcvad")
    sys.modules["webrtcvad"] = types.ModuleType("webrtcvad")
    try:
        from resemblyzer import audio, voice_encoder
        yield audio, voice_encoder
    finally:
        if saved is None:
            sys.modules.pop("webrtcvad", None)
        else:
            sys.modules["webrtcvad"] = saved


def test_same_network_and_front_end_as_resemblyzer(voice, resemblyzer_modules):
    audio, voice_encoder = resemblyzer_modules
    x = speaker_clip(f0=120.0, formant_scale=1.0, seed=1, seconds=2.5)
    ours = voice.partials(x)
    theirs = audio.wav_to_mel_spectrogram(x)  # [frames, 40] mel power, librosa
    assert ours.shape[1:] == (160, 40)
    np.testing.assert_allclose(ours[0], theirs[:160], rtol=1e-3, atol=1e-6 * float(theirs.max()))
    ref_net = voice_encoder.VoiceEncoder(device="cpu", verbose=False)
    with torch.no_grad():
        ref = ref_net(torch.from_numpy(ours)).numpy()
    frames, times = voice.embed_frames(x)
    np.testing.assert_allclose(frames, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(times, np.arange(len(frames)) * 0.8)
    np.testing.assert_allclose(np.linalg.norm(frames, axis=1), 1.0, rtol=1e-5)


def test_separates_two_generated_speakers(voice):
    """Synthetic voices (glottal pulses through vowel formants): two utterances of a speaker are nearer each other
    than to any utterance of the other speaker."""
    def utterance_vector(**kw):
        v = voice.embed_frames(speaker_clip(seconds=2.4, **kw))[0].mean(axis=0)
        return v / np.linalg.norm(v)

    a = [utterance_vector(f0=110.0, formant_scale=1.0, seed=s) for s in (0, 1)]
    b = [utterance_vector(f0=210.0, formant_scale=1.18, seed=s) for s in (10, 11)]
    within = min(float(a[0] @ a[1]), float(b[0] @ b[1]))
    across = max(float(x @ y) for x in a for y in b)
    assert within > across + 0.05, (within, across)


def test_esc50_recordings_embed(voice, esc50_root):
    from audiosim.engine.audio.decode import load_audio

    clips = sorted((esc50_root / "audio").glob("*-20.*"))[:2]  # class 20: crying baby
    assert clips, "no ESC-50 clips of class 20"
    for path in clips:
        frames, times = voice.embed_frames(load_audio(path, sample_rate=SR))
        assert frames.shape == (len(times), 256) and len(times) == 5  # 5 s: partials at 0, 0.8, ..., 3.2 s
        assert np.isfinite(frames).all() and (frames >= 0).all()


def test_weights_errors_name_the_fix(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="pretrained.pt"):
        get_embedder("voice", weights=str(tmp_path / "missing.pt"))
    torch.save({"model_state": {"lstm.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(WeightsFormatError, match="GE2E"):
        get_embedder("voice", weights=str(tmp_path / "other.pt"))
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(WeightsFormatError, match="safely"):
        get_embedder("voice", weights=str(tmp_path / "pickle.pt"))
