"""The audio check behind ``locate`` (issue 23, item 2), without a model: prints, templates, the masked
correlation, the scan of a whole recording, and the candidate places the votes name.

Proves: the template counts the excerpt's sound and not its noise floor; a noisy, quieter copy of a
stretch of a synthetic recording (events between digital silence) correlates best at its true lag
and a stretch of another synthetic recording does not come close; digital silence matches nothing;
the scan finds a noisy excerpt in a recording file to within one coarse frame and skips a file that
is gone; the voted places are distinct, best first, and one per recurrence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from audiosim.engine.audio import synth
from audiosim.engine.search.excerpt_print import COARSE, FINE, MASK_MARGIN_DB, Template, correlate, log_mel_print
from audiosim.engine.search.excerpt_scan import phase_templates, scan_file
from audiosim.engine.search.locate import vote_places

SR = 16000


def _recording(seconds: float, seed: int) -> np.ndarray:
    """Synthetic: 1-3 s events (chirps, clicks, tones, noises) at random levels, 0.3-2 s of digital silence between."""
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < seconds * SR:
        d = float(rng.uniform(1.0, 3.0))
        kind = int(rng.integers(4))
        if kind == 0:
            ev = synth.chirp(f0=float(rng.uniform(100, 800)), f1=float(rng.uniform(1500, 6000)), duration_s=d, rng=rng)
        elif kind == 1:
            ev = synth.clicks(rate_hz=float(rng.uniform(3, 15)), duration_s=d, rng=rng)
        elif kind == 2:
            ev = synth.tone(freq=float(rng.uniform(150, 2500)), duration_s=d, harmonics=int(rng.integers(1, 5)), rng=rng)
        else:
            ev = synth.noise(duration_s=d, color=["white", "pink", "brown"][int(rng.integers(3))], rng=rng)
        parts += [ev * float(rng.uniform(0.05, 0.5)), np.zeros(int(rng.uniform(0.3, 2.0) * SR), np.float32)]
        total += parts[-2].size + parts[-1].size
    return np.concatenate(parts)[: int(seconds * SR)].astype(np.float32)


def _degrade(x: np.ndarray, rng, *, noise_dbfs: float, gain_db: float) -> np.ndarray:
    return (x * 10 ** (gain_db / 20) + 10 ** (noise_dbfs / 20) * rng.standard_normal(x.size)).astype(np.float32)


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    return _recording(90.0, seed=11)


def test_the_template_counts_sound_and_leaves_out_the_noise_floor():
    rng = np.random.default_rng(0)
    sound = synth.tone(freq=1000.0, duration_s=2.0, rng=rng) * 0.3
    x = np.concatenate([np.zeros(2 * SR, np.float32), sound, np.zeros(2 * SR, np.float32)])
    noisy = _degrade(x, rng, noise_dbfs=-50.0, gain_db=0.0)
    levels = log_mel_print(noisy, SR, FINE)
    t = Template.of(levels)
    hop = FINE.hop_s(SR)
    gap = slice(int(0.2 / hop), int(1.8 / hop))  # the noise floor where the recording is digital silence
    tone = slice(int(2.2 / hop), int(3.8 / hop))
    assert t.mask[:, gap].mean() < 0.01  # a few cells of the floor poke above it by chance
    band = int(np.argmax(levels[:, tone].mean(axis=1)))  # the band holding the tone
    assert t.mask[band, tone].all() and t.usable
    assert levels[band, tone].mean() > np.percentile(levels[band], 10) + MASK_MARGIN_DB


def test_a_noisy_quieter_copy_correlates_best_at_its_lag_and_other_audio_does_not(recording):
    rng = np.random.default_rng(1)
    hop = FINE.hop_s(SR)
    ref = log_mel_print(recording, SR, FINE)
    for start_s, length_s in ((7.3, 8.0), (41.02, 12.5), (70.5, 6.0)):
        excerpt = _degrade(recording[int(start_s * SR): int((start_s + length_s) * SR)], rng, noise_dbfs=-45.0, gain_db=-6.0)
        t = Template.of(log_mel_print(excerpt, SR, FINE))
        corr = correlate(t, ref)
        assert abs(int(np.argmax(corr)) * hop - start_s) <= 0.02
        assert corr.max() > 0.55  # measured 0.61-0.84
        other = correlate(t, log_mel_print(_recording(60.0, seed=99), SR, FINE))  # look-alike synthetic events
        assert other.max() < corr.max() - 0.1  # measured margins 0.11-0.70


def test_digital_silence_matches_nothing(recording):
    t = Template.of(log_mel_print(recording[5 * SR: 12 * SR], SR, FINE))
    corr = correlate(t, log_mel_print(np.zeros(20 * SR, np.float32), SR, FINE))
    assert corr.size and np.all(corr == 0.0)
    assert correlate(t, log_mel_print(np.zeros(3 * SR, np.float32), SR, FINE)).size == 0  # shorter than the excerpt


def test_the_scan_finds_a_noisy_excerpt_in_a_file_and_skips_a_missing_one(recording, tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.concatenate([_recording(200.0, seed=3), recording]), SR, subtype="FLOAT")
    rng = np.random.default_rng(2)
    excerpt = _degrade(recording[int(33.3 * SR): int(43.3 * SR)], rng, noise_dbfs=-40.0, gain_db=4.0)
    peaks = scan_file(phase_templates(excerpt, SR), path, sample_rate=SR, min_gap_s=3.0)
    assert len(peaks) == 3 and peaks[0].correlation > peaks[1].correlation
    assert abs(peaks[0].offset_s - (200.0 + 33.3)) <= COARSE.hop_s(SR)
    assert all(abs(a.offset_s - b.offset_s) >= 3.0 for a in peaks for b in peaks if a is not b)
    assert scan_file(phase_templates(excerpt, SR), tmp_path / "gone.wav", sample_rate=SR, min_gap_s=3.0) == []


@dataclass(frozen=True)
class H:
    path: str
    offset_s: float
    score: float


def _flat(hits):
    q = np.array([i for i, row in enumerate(hits) for _ in row])
    flat = [h for row in hits for h in row]
    return q, [h.path for h in flat], np.array([h.offset_s for h in flat]), np.array([h.score for h in flat])


def test_voted_places_are_distinct_best_first_one_per_recurrence():
    qoff = np.arange(6, dtype=float)
    # every segment's best match is at file a, offset 20 (+ its own time); the second best at file a, offset 60
    # (a recurrence), the third at file b, offset 5; a stray vote lands one bin off the first place
    hits = [[H("a", 20.0 + i, 0.9), H("a", 60.0 + i, 0.8), H("b", 5.0 + i, 0.7), H("a", 21.0 + i, 0.6)] for i in range(6)]
    places = vote_places(*_flat(hits), qoff, hop_s=1.0, max_places=5)
    assert [(p.path, p.offset_s, p.votes) for p in places[:3]] == [("a", 20.0, 6), ("a", 60.0, 6), ("b", 5.0, 6)]
    assert places[0].weight == pytest.approx(6.0) and places[1].weight == pytest.approx(3.0)
    assert all(abs(p.offset_s - 20.0) > 3 for p in places[1:] if p.path == "a")  # the stray vote is not a place
    assert len(vote_places(*_flat(hits), qoff, hop_s=1.0, max_places=2)) == 2
    assert vote_places(np.zeros(0, int), [], np.zeros(0), np.zeros(0), qoff, hop_s=1.0) == []
