"""Excerpt location that survives degradation (issue 23, item 2), on generated recordings with silent gaps.

Proves, with YAMNet segment collections of synthetic recordings (varied events separated by
digital silence): excerpts cut at random offsets and degraded -- white noise at -45 dBFS, gain
+6 / -6 dB, an Ogg Vorbis and an MP3 re-encode, resampled to 22.05 and 44.1 kHz, and noise at
-50 dBFS + -2 dB + Ogg + 44.1 kHz together -- are located within 0.5 s, checked on the audio
(``verified``); when the votes name no right place the scan of the recording finds it; when the
recording cannot be read the votes' answer stands; an excerpt of a passage that the recording
holds twice is placed at one of the two with a confidence near 0, while an excerpt of a passage
heard once scores high; an excerpt shorter than one analysis window is a clear error (API and CLI).
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import audiosim
from audiosim.cli import main
from audiosim.engine.audio import synth
from audiosim.engine.audio.decode import resample
from audiosim.engine.search import excerpt as excerpt_module
from audiosim.engine.search.locate import Place
from audiosim.errors import ExcerptTooShortError

SR = 16000


def _events(seconds: float, rng) -> np.ndarray:
    """3-6 s events of varied kinds separated by 0.5-4 s of digital silence (synthetic)."""
    parts, t = [], 0.0
    while t < seconds:
        d = float(rng.uniform(3.0, 6.0))
        kind = rng.integers(4)
        if kind == 0:
            ev = synth.chirp(f0=float(rng.uniform(100, 800)), f1=float(rng.uniform(1000, 6000)), duration_s=d, rng=rng)
        elif kind == 1:
            ev = synth.clicks(rate_hz=float(rng.uniform(3, 20)), duration_s=d, rng=rng)
        elif kind == 2:
            ev = synth.tone(freq=float(rng.uniform(150, 2000)), duration_s=d, harmonics=int(rng.integers(1, 6)))
        else:
            ev = synth.noise(duration_s=d, color=["white", "pink", "brown"][int(rng.integers(3))], rng=rng)
        ev = (ev * float(rng.uniform(0.2, 1.0)) * np.hanning(ev.size) ** 0.1).astype(np.float32)
        gap = np.zeros(int(rng.uniform(0.5, 4.0) * SR), np.float32)
        parts += [ev, gap]
        t += d + gap.size / SR
    return np.concatenate(parts)


def _index(base, name: str, x: np.ndarray, weights):
    (base / name).mkdir()
    sf.write(base / name / "long.wav", x, SR, subtype="FLOAT")
    coll = base / f"{name}_coll"
    audiosim.index_folder(base / name, coll, embedder="yamnet", weights=weights, segment_s=2.0, segment_hop_s=1.0)
    return coll


@pytest.fixture(scope="module")
def gappy(tmp_path_factory, yamnet_tflite):
    """A 150 s synthetic recording of events between digital silence, indexed (2 s segments, 1 s hop)."""
    x = _events(150.0, np.random.default_rng(23))
    base = tmp_path_factory.mktemp("gappy")
    return x, _index(base, "rec", x, yamnet_tflite)


@pytest.fixture(scope="module")
def recurring(tmp_path_factory, yamnet_tflite):
    """A synthetic recording that holds one 14 s passage twice (at 30 s and at 100 s), other events around."""
    rng = np.random.default_rng(7)
    passage = _events(14.0, rng)[: 14 * SR]
    x = np.concatenate([_events(30.0, rng)[: 30 * SR], passage, _events(56.0, rng)[: 56 * SR], passage,
                        _events(30.0, rng)[: 30 * SR]])
    base = tmp_path_factory.mktemp("recurring")
    return x, _index(base, "rec", x, yamnet_tflite)


def _encode(y: np.ndarray, fmt: str) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1, 1), SR, format=fmt, subtype={"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}[fmt])
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


def _degrade(x: np.ndarray, condition: str, rng) -> tuple[np.ndarray, int]:
    if condition == "noise-45":
        return (x + 10 ** (-45 / 20) * rng.standard_normal(x.size)).astype(np.float32), SR
    if condition in ("gain+6", "gain-6"):
        return np.clip(x * 10 ** (float(condition[4:]) / 20), -1, 1).astype(np.float32), SR
    if condition in ("ogg", "mp3"):
        return _encode(x, condition.upper()), SR
    if condition in ("resample22k", "resample44k"):
        target = 22050 if condition == "resample22k" else 44100
        return resample(x, orig_sr=SR, target_sr=target), target
    assert condition == "all"
    y = x * 10 ** (-2 / 20) + 10 ** (-50 / 20) * rng.standard_normal(x.size).astype(np.float32)
    return resample(_encode(y, "OGG"), orig_sr=SR, target_sr=44100), 44100


CONDITIONS = ["noise-45", "gain+6", "gain-6", "ogg", "mp3", "resample22k", "resample44k", "all"]


@pytest.mark.parametrize("condition", CONDITIONS)
def test_degraded_excerpts_at_random_offsets_are_found_within_half_a_second(gappy, condition):
    x, coll = gappy
    s = audiosim.open_collection(coll).searcher()
    rng = np.random.default_rng(100 + CONDITIONS.index(condition))
    errors = []
    for _ in range(4):
        length = float(rng.uniform(5.0, 15.0))
        start = float(rng.uniform(0.0, x.size / SR - length))
        excerpt, sr = _degrade(x[int(start * SR):int((start + length) * SR)], condition, rng)
        best = s.locate(waveform=excerpt, sample_rate=sr, max_files=1)[0]
        assert best.refined and best.verified is not None, best.to_dict()  # checked on the audio
        errors.append(abs(best.offset_s - start))
    assert max(errors) <= 0.5, errors


def test_the_scan_finds_the_place_when_no_voted_place_holds_it(gappy, monkeypatch):
    x, coll = gappy
    s = audiosim.open_collection(coll).searcher()
    start, length = 61.37, 9.0
    path = s.items.paths[0]
    wrong = [Place(path=path, offset_s=5.0, votes=9, weight=9.0, mean_score=0.9, best_score=0.9)]
    monkeypatch.setattr(excerpt_module, "vote_places", lambda *a, **k: wrong)  # the votes point elsewhere
    rng = np.random.default_rng(3)
    excerpt = (x[int(start * SR):int((start + length) * SR)] + 10 ** (-45 / 20) * rng.standard_normal(int(length * SR)))
    best = s.locate(waveform=excerpt.astype(np.float32), sample_rate=SR)[0]
    assert best.scanned and abs(best.offset_s - start) <= 0.5, best.to_dict()
    s2 = audiosim.open_collection(coll).searcher()  # without the scan the wrong voted place is all there is
    state = s2._current()
    wave = s2._prepare_waveform(excerpt.astype(np.float32), SR)
    from audiosim.engine.search.query import Filters

    locs = excerpt_module.locate_excerpt(s2, state, wave, filters=Filters.make(), top_m=20, max_files=3, scan_limit_s=0)
    assert not locs[0].scanned and abs(locs[0].offset_s - start) > 3.0


def test_an_unreadable_recording_leaves_the_votes_answer(gappy, tmp_path, yamnet_tflite):
    x, _ = gappy
    coll = _index(tmp_path, "moved", x[: 40 * SR], yamnet_tflite)
    s = audiosim.open_collection(coll).searcher()
    shutil.rmtree(tmp_path / "moved")  # the recording is gone since it was indexed
    best = s.locate(waveform=x[int(12.3 * SR): int(22.3 * SR)], sample_rate=SR)[0]
    assert best.verified is None and not best.refined and not best.scanned
    assert abs(best.offset_s - 12.3) <= 1.0  # the vote, to within a hop


def test_confidence_is_near_zero_for_a_passage_heard_twice_and_high_for_one_heard_once(recurring):
    x, coll = recurring
    s = audiosim.open_collection(coll).searcher()
    rng = np.random.default_rng(11)
    twice = (x[int(33.4 * SR): int(41.4 * SR)] + 10 ** (-50 / 20) * rng.standard_normal(8 * SR)).astype(np.float32)
    locs = s.locate(waveform=twice, sample_rate=SR)
    best = locs[0]
    assert min(abs(best.offset_s - 33.4), abs(best.offset_s - 103.4)) <= 0.5, best.to_dict()
    assert best.verified > 0.8 and best.confidence < 0.1, best.to_dict()
    once = (x[int(60.2 * SR): int(70.2 * SR)] + 10 ** (-50 / 20) * rng.standard_normal(10 * SR)).astype(np.float32)
    best = s.locate(waveform=once, sample_rate=SR)[0]
    assert abs(best.offset_s - 60.2) <= 0.5 and best.confidence > 0.5, best.to_dict()


def test_an_excerpt_shorter_than_one_window_is_a_clear_error(gappy, tmp_path):
    x, coll = gappy
    s = audiosim.open_collection(coll).searcher()
    with pytest.raises(ExcerptTooShortError, match="shorter than one 0.96 s analysis window"):
        s.locate(waveform=x[SR * 3: SR * 3 + SR // 100], sample_rate=SR)
    clip = tmp_path / "tiny.wav"
    sf.write(clip, x[SR * 3: SR * 3 + SR // 100], SR)
    r = CliRunner().invoke(main, ["locate", str(clip), "--collection", str(coll)])
    assert r.exit_code == 2 and "analysis window" in r.output and "Traceback" not in r.output
