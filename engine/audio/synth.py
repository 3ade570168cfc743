"""Synthetic sounds for the demo, the tests and benchmarks: deterministic given a seed.

Each generator returns mono float32 samples in [-1, 1]. ``KINDS`` maps a kind name to its
generator so a folder of labelled sounds can be made with :func:`write_demo_folder`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _t(duration_s: float, sr: int) -> np.ndarray:
    return np.arange(int(round(duration_s * sr))) / sr


def _finish(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return (x * (peak / m) if m > 0 else x).astype(np.float32)


def tone(*, freq: float = 440.0, duration_s: float = 2.0, sr: int = 16000, harmonics: int = 1,
         rng: np.random.Generator | None = None) -> np.ndarray:
    """A (harmonic) tone with a slight random detune and phase."""
    rng = rng or np.random.default_rng(0)
    t = _t(duration_s, sr)
    f = freq * (1 + 0.02 * rng.standard_normal())
    x = sum(np.sin(2 * np.pi * f * (h + 1) * t + rng.uniform(0, 2 * np.pi)) / (h + 1) for h in range(harmonics))
    return _finish(x + 0.005 * rng.standard_normal(t.size))


def chirp(*, f0: float = 200.0, f1: float = 4000.0, duration_s: float = 2.0, sr: int = 16000,
          rng: np.random.Generator | None = None) -> np.ndarray:
    """A repeated exponential up-sweep (0.5 s sweeps)."""
    rng = rng or np.random.default_rng(0)
    t = _t(duration_s, sr)
    period = 0.5 * (1 + 0.1 * rng.standard_normal())
    tau = np.mod(t, period) / period
    phase = 2 * np.pi * f0 * period * ((f1 / f0) ** tau - 1) / np.log(f1 / f0)
    return _finish(np.sin(phase) + 0.005 * rng.standard_normal(t.size))


def noise(*, duration_s: float = 2.0, sr: int = 16000, color: str = "white",
          rng: np.random.Generator | None = None) -> np.ndarray:
    """White, pink (1/f) or brown (1/f^2) noise."""
    rng = rng or np.random.default_rng(0)
    n = int(round(duration_s * sr))
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / sr), 1.0)
    spec = spec * {"white": 1.0, "pink": 1 / np.sqrt(f), "brown": 1 / f}[color]
    return _finish(np.fft.irfft(spec, n), peak=0.4)


def clicks(*, rate_hz: float = 8.0, duration_s: float = 2.0, sr: int = 16000,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """A train of short decaying broadband clicks."""
    rng = rng or np.random.default_rng(0)
    n = int(round(duration_s * sr))
    x = 0.003 * rng.standard_normal(n)
    period = int(sr / (rate_hz * (1 + 0.1 * rng.standard_normal())))
    burst = rng.standard_normal(200) * np.exp(-np.arange(200) / 30)
    for start in range(int(rng.integers(0, period)), n - 200, max(period, 1)):
        x[start:start + 200] += burst
    return _finish(x)


def machine_hum(*, f0: float = 50.0, duration_s: float = 2.0, sr: int = 16000, anomaly: str | None = None,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """A motor hum: harmonics of ``f0`` plus broadband noise; ``anomaly`` adds a fault.

    Anomalies: ``clicks`` (impacts), ``shift`` (one harmonic moved up 7 %), ``rub`` (a
    band-limited scraping noise modulated at the rotation rate).
    """
    rng = rng or np.random.default_rng(0)
    t = _t(duration_s, sr)
    f = f0 * (1 + 0.01 * rng.standard_normal())
    amps = [1.0, 0.6, 0.35, 0.25, 0.15, 0.1]
    freqs = [f * (h + 1) for h in range(len(amps))]
    if anomaly == "shift":
        freqs[2] *= 1.07
    x = sum(a * np.sin(2 * np.pi * fh * t + rng.uniform(0, 2 * np.pi)) for a, fh in zip(amps, freqs))
    x = x + 0.3 * noise(duration_s=duration_s, sr=sr, color="pink", rng=rng)
    if anomaly == "clicks":
        x = x + 2.0 * clicks(rate_hz=3.0, duration_s=duration_s, sr=sr, rng=rng)
    elif anomaly == "rub":
        from scipy.signal import butter, sosfilt

        sos = butter(4, [2000, 4000], btype="band", fs=sr, output="sos")
        scrape = sosfilt(sos, rng.standard_normal(t.size))
        x = x + 3.0 * scrape * (0.5 + 0.5 * np.sin(2 * np.pi * f * t))
    elif anomaly not in (None, "shift"):
        raise ValueError(f"unknown anomaly {anomaly!r}")
    return _finish(x)


KINDS = {
    "tone": lambda rng, sr, d: tone(freq=float(rng.uniform(380, 520)), duration_s=d, sr=sr, harmonics=3, rng=rng),
    "chirp": lambda rng, sr, d: chirp(duration_s=d, sr=sr, rng=rng),
    "noise": lambda rng, sr, d: noise(duration_s=d, sr=sr, color="pink", rng=rng),
    "clicks": lambda rng, sr, d: clicks(duration_s=d, sr=sr, rng=rng),
    "hum": lambda rng, sr, d: machine_hum(duration_s=d, sr=sr, rng=rng),
}


def write_demo_folder(folder: str | Path, *, per_kind: int = 4, seed: int = 0) -> list[Path]:
    """Write ``per_kind`` clips of each kind into ``folder/<kind>/`` in mixed formats, rates and channels.

    Formats cycle through wav (16-bit), flac, ogg and float wav; rates through 16, 22.05, 44.1
    and 48 kHz; every other clip is stereo. Returns the written paths.
    """
    import soundfile as sf

    rng = np.random.default_rng(seed)
    formats = [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"), ("wav", "FLOAT")]
    rates = [16000, 22050, 44100, 48000]
    out = []
    for kind, make in KINDS.items():
        d = Path(folder) / kind
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_kind):
            sr = rates[i % len(rates)]
            x = make(rng, sr, float(rng.uniform(1.5, 3.0)))
            if i % 2:
                x = np.stack([x, 0.8 * x], axis=1)
            ext, subtype = formats[i % len(formats)]
            p = d / f"{kind}_{i:02d}.{ext}"
            sf.write(str(p), x, sr, subtype=subtype)
            out.append(p)
    return out
