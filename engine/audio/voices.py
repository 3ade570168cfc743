"""Synthetic voices (named synthetic): a glottal pulse train through vowel formant resonators.

A "speaker" is a fundamental frequency ``f0`` (with a slow vibrato) and a vocal-tract scale
``formant_scale`` (formants move up for a shorter tract); an utterance is a random sequence of
six vowels. Two utterances of one speaker share ``f0`` and formant scale and differ in their
vowels, so a speaker embedder should group them. Used by the voice embedder's tests and
``scripts/bench_speaker.py --synthetic``.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

#: (F1, F2, F3) in Hz of /a/, /i/, /o/, /e/, /u/ for an adult male tract.
VOWELS = ((700, 1200, 2600), (300, 2200, 3000), (500, 900, 2400), (400, 1900, 2600), (320, 800, 2300))


def speaker_clip(*, f0: float, formant_scale: float, seed: int, seconds: float = 3.0, sample_rate: int = 16000,
                 n_vowels: int = 6) -> np.ndarray:
    """float32 mono utterance of a synthetic speaker, peak 0.3."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f = f0 * (1.0 + 0.05 * np.sin(2 * np.pi * rng.uniform(2.0, 5.0) * t))
    phase = np.cumsum(2 * np.pi * f / sample_rate)
    source = sum(np.sin(h * phase) / h for h in range(1, 30))
    out = np.zeros(n)
    seg = n // n_vowels
    r = np.exp(-np.pi * 100.0 / sample_rate)  # 100 Hz formant bandwidth
    for i in range(n_vowels):
        x = source[i * seg:(i + 1) * seg if i < n_vowels - 1 else n]
        y = np.zeros_like(x)
        for fc in VOWELS[int(rng.integers(len(VOWELS)))]:
            w = 2 * np.pi * min(fc * formant_scale, 0.45 * sample_rate) / sample_rate
            y += scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(w), r * r], x)
        out[i * seg:i * seg + y.size] = y
    peak = np.abs(out).max()
    return (0.3 * out / peak if peak > 0 else out).astype(np.float32)
