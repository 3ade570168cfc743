"""Synthetic machine sounds with physical faults, written in the DCASE Task 2 layouts (all SYNTHETIC).

Three synthetic machine types, each with several IDs (sections) that differ audibly:

* ``motor`` -- a rotating machine: harmonics of a shaft frequency (25-60 Hz) with an ID-specific
  harmonic profile, slow speed drift, a structural resonance and pink background noise;
* ``fan`` -- broadband airflow noise shaped by an ID-specific band plus the blade-pass tone
  (blades x shaft frequency) and its harmonics;
* ``pump`` -- a low hum, the vane-pass tone, and turbulent flow noise with a resonance.

Faults, each with a physical story and a ``strength`` (1.0 = the default, 0 = no fault):

* ``bearing`` -- an outer-race defect: impulses at the defect frequency (3.57 x shaft) each ringing a
  high-frequency structural resonance;
* ``imbalance`` -- a heavier 1x component and amplitude modulation of the harmonics at the shaft rate
  (sidebands at +-1x around every harmonic);
* ``rub`` -- band-limited scraping noise (1.5-3.5 kHz) switched on once per revolution;
* ``cavitation`` -- random bursts of high-frequency broadband noise (collapsing vapour bubbles);
* ``speed`` -- the machine runs 8 % faster or slower than its normal speed (x strength).

Domains (DCASE 2021-2024): the ``target`` domain runs the same machine at another operating point
(speed x 1.12) with louder background noise; attributes (speed, noise) are written in the file names and,
for 2022-2024, in ``attributes_XX.csv`` files. Every clip's amplitude is normalised, so loudness alone
never gives a fault away.
"""

from __future__ import annotations

import csv
import enum
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiosim.errors import DatasetError

SYNTHETIC_NOTE = "SYNTHETIC machine sounds made by audiosim (engine/audio/machines.py); not recordings"


class Fault(str, enum.Enum):
    BEARING = "bearing"
    IMBALANCE = "imbalance"
    RUB = "rub"
    CAVITATION = "cavitation"
    SPEED = "speed"


MACHINE_FAULTS: dict[str, tuple[Fault, ...]] = {
    "motor": (Fault.BEARING, Fault.IMBALANCE, Fault.RUB, Fault.SPEED),
    "fan": (Fault.BEARING, Fault.IMBALANCE, Fault.RUB, Fault.SPEED),
    "pump": (Fault.BEARING, Fault.CAVITATION, Fault.IMBALANCE, Fault.SPEED),
}
MACHINE_TYPES = tuple(MACHINE_FAULTS)
YEARS = (2020, 2021, 2022, 2023, 2024)
TARGET_SPEED = 1.12
DEFECT_RATIO = 3.57  # outer-race defect frequency / shaft frequency


def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.arange(spec.size), 1.0)
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / (np.std(x) + 1e-12)


def _band(x: np.ndarray, lo: float, hi: float, sr: int) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    sos = butter(4, [lo, min(hi, 0.45 * sr)], btype="band", fs=sr, output="sos")
    y = sosfilt(sos, x)
    return y / (np.std(y) + 1e-12)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)) + 1e-12)


@dataclass(frozen=True)
class MachineProfile:
    """What makes one synthetic machine ID sound like itself."""

    machine: str
    machine_id: int
    shaft_hz: float
    harmonics: tuple[float, ...]
    blades: int
    resonance_hz: float
    noise_band: tuple[float, float]
    tonal_level: float
    noise_level: float

    @classmethod
    def make(cls, machine: str, machine_id: int) -> "MachineProfile":
        if machine not in MACHINE_FAULTS:
            raise DatasetError(f"unknown synthetic machine type {machine!r}; choose from {', '.join(MACHINE_TYPES)}")
        r = np.random.default_rng(_seed("profile", machine, machine_id))
        shaft = {"motor": 25.0, "fan": 12.0, "pump": 24.0}[machine] * (1.0 + 0.35 * machine_id) * r.uniform(0.95, 1.05)
        harm = tuple(float(a) for a in r.uniform(0.1, 1.0, 8) / np.arange(1, 9) ** r.uniform(0.3, 1.0))
        lo = r.uniform(200, 1200)
        return cls(machine=machine, machine_id=machine_id, shaft_hz=float(shaft), harmonics=harm,
                   blades=int(r.integers(4, 10)), resonance_hz=float(r.uniform(900, 2600)),
                   noise_band=(float(lo), float(lo * r.uniform(3, 6))),
                   tonal_level={"motor": 1.0, "fan": 0.5, "pump": 0.7}[machine], noise_level=float(r.uniform(0.15, 0.3)))


def _tones(freq: np.ndarray, amps, sr: int, rng) -> np.ndarray:
    """Sum of harmonics k * freq(t) (instantaneous frequency), amplitudes ``amps``."""
    phase = 2 * np.pi * np.cumsum(freq) / sr
    out = np.zeros_like(freq)
    for k, a in enumerate(amps, start=1):
        if k * freq.max() < 0.45 * sr:
            out += a * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out


def machine_clip(profile: MachineProfile, *, duration_s: float = 2.0, sr: int = 16000, fault: Fault | None = None,
                 strength: float = 1.0, domain: str = "source", rng: np.random.Generator) -> np.ndarray:
    """One SYNTHETIC clip of ``profile``'s machine (float32, peak 0.5), optionally with a fault."""

    n = int(round(duration_s * sr))
    t = np.arange(n) / sr
    speed = TARGET_SPEED if domain == "target" else 1.0
    if fault == Fault.SPEED:
        speed *= 1.0 + 0.08 * strength * rng.choice([-1.0, 1.0])
    drift = 1.0 + 0.006 * np.sin(2 * np.pi * t / rng.uniform(3, 8) + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.003)
    shaft = profile.shaft_hz * speed * drift  # instantaneous shaft frequency [n]
    amps = np.array(profile.harmonics) * rng.uniform(0.9, 1.1, len(profile.harmonics))
    if profile.machine == "motor":
        tonal = _tones(shaft, amps, sr, rng)
    elif profile.machine == "fan":
        tonal = 0.3 * _tones(shaft, amps[:3], sr, rng) + _tones(shaft * profile.blades, amps[:4], sr, rng)
    else:
        tonal = _tones(shaft, amps[:4], sr, rng) + 0.8 * _tones(shaft * profile.blades, amps[:3], sr, rng)
    tonal = profile.tonal_level * tonal / _rms(tonal)
    if fault == Fault.IMBALANCE:
        phase = 2 * np.pi * np.cumsum(shaft) / sr
        m = min(0.9, 0.55 * strength)
        tonal = tonal * (1 + m * np.cos(phase)) + 0.8 * strength * profile.tonal_level * np.sin(phase)
    flow = _band(rng.standard_normal(n), *profile.noise_band, sr)
    flow_level = {"motor": 0.3, "fan": 1.0, "pump": 0.6}[profile.machine]
    reson = _band(rng.standard_normal(n), profile.resonance_hz * 0.9, profile.resonance_hz * 1.1, sr)
    x = tonal + flow_level * flow + 0.15 * reson
    base = _rms(x)
    if fault == Fault.BEARING:
        rate = DEFECT_RATIO * profile.shaft_hz * speed
        ring = np.exp(-np.arange(int(0.004 * sr)) / (0.0008 * sr)) * np.sin(2 * np.pi * 3500 * np.arange(int(0.004 * sr)) / sr)
        imp = np.zeros(n)
        for s in np.arange(rng.uniform(0, 1 / rate), duration_s, 1 / rate):
            i = int(s * sr + rng.normal(0, 0.0005 * sr))
            if 0 <= i < n:
                imp[i] = rng.uniform(0.6, 1.0)
        burst = np.convolve(imp, ring)[:n]
        x = x + 0.5 * strength * base * burst / _rms(burst)
    elif fault == Fault.RUB:
        phase = 2 * np.pi * np.cumsum(shaft) / sr
        gate = np.maximum(np.sin(phase), 0.0) ** 4
        scrape = _band(rng.standard_normal(n), 1500, 3500, sr) * gate
        x = x + 0.4 * strength * base * scrape / _rms(scrape)
    elif fault == Fault.CAVITATION:
        env = np.zeros(n)
        for _ in range(rng.poisson(8 * duration_s) + 1):
            i, d = int(rng.integers(0, n)), int(rng.uniform(0.005, 0.02) * sr)
            env[i:i + d] += np.hanning(2 * d)[d:][: n - i] * rng.uniform(0.5, 1.0)
        pops = _band(rng.standard_normal(n), 2500, 7000, sr) * env
        x = x + 0.5 * strength * base * pops / _rms(pops)
    bg_level = profile.noise_level * (2.0 if domain == "target" else 1.0) * rng.uniform(0.8, 1.25)
    x = x / _rms(x) + bg_level * _pink(n, rng)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. CI-sized defaults: 3 machine types x 3 IDs, 2 s clips at 16 kHz."""

    year: int = 2020
    machines: tuple[str, ...] = MACHINE_TYPES
    ids: int = 3
    train: int = 20  # normal training clips per ID (source domain)
    target_train: int = 3  # 2021-2024: target-domain training clips per section
    test_normal: int = 10  # per ID (2021-2024: per section and domain)
    test_anomaly: int = 10
    duration_s: float = 2.0
    sample_rate: int = 16000
    strength: float = 1.0
    faults: tuple[str, ...] = ()  # empty: each machine type's faults
    seed: int = 0

    def __post_init__(self) -> None:
        if self.year not in YEARS:
            raise DatasetError(f"year must be one of {', '.join(map(str, YEARS))}, got {self.year}")
        bad = [m for m in self.machines if m not in MACHINE_FAULTS]
        if bad or not self.machines:
            raise DatasetError(f"unknown synthetic machine types {bad}; choose from {', '.join(MACHINE_TYPES)}")
        known = {f.value for f in Fault}
        if any(f not in known for f in self.faults):
            raise DatasetError(f"unknown faults {[f for f in self.faults if f not in known]}; choose from {', '.join(sorted(known))}")
        if self.ids < 1 or self.train < 1 or self.test_normal < 1 or self.test_anomaly < 1 or self.target_train < 0:
            raise DatasetError("need ids, train, test_normal, test_anomaly >= 1 and target_train >= 0")
        if not (0.25 <= self.duration_s <= 60) or self.sample_rate < 8000:
            raise DatasetError("duration must be within 0.25-60 s and the sample rate at least 8000 Hz")
        if not 0 <= self.strength <= 10:
            raise DatasetError(f"strength must be within [0, 10], got {self.strength}")


@dataclass
class SynthSummary:
    root: str
    year: int
    files: int = 0
    by_split: dict = field(default_factory=dict)
    note: str = SYNTHETIC_NOTE

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _attrs(domain: str, machine_id: int, i: int) -> list[tuple[str, str]]:
    speed = TARGET_SPEED if domain == "target" else 1.0
    return [("speed", f"{speed:.2f}"), ("noise", "loud" if domain == "target" else "quiet")]


def write_machine_dataset(root: str | Path, config: SynthConfig = SynthConfig()) -> SynthSummary:
    """Write a SYNTHETIC DCASE-layout dataset under ``root`` (see the module docstring); returns counts."""
    import soundfile as sf

    out = Path(root)
    summary = SynthSummary(root=str(out), year=config.year)

    def put(path: Path, x: np.ndarray, split: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), x, config.sample_rate, subtype="PCM_16")
        summary.files += 1
        summary.by_split[split] = summary.by_split.get(split, 0) + 1

    for machine in config.machines:
        faults = tuple(Fault(f) for f in config.faults if Fault(f) in MACHINE_FAULTS[machine]) or MACHINE_FAULTS[machine]
        for mid in range(config.ids):
            prof = MachineProfile.make(machine, mid)
            rng = np.random.default_rng(_seed(config.seed, machine, mid))
            clip = lambda fault=None, domain="source": machine_clip(  # noqa: E731
                prof, duration_s=config.duration_s, sr=config.sample_rate, fault=fault,
                strength=config.strength, domain=domain, rng=rng)
            if config.year == 2020:
                for i in range(config.train):
                    put(out / machine / "train" / f"normal_id_{mid:02d}_{i:08d}.wav", clip(), "train")
                for i in range(config.test_normal):
                    put(out / machine / "test" / f"normal_id_{mid:02d}_{i:08d}.wav", clip(), "test")
                for i in range(config.test_anomaly):
                    put(out / machine / "test" / f"anomaly_id_{mid:02d}_{i:08d}.wav", clip(faults[i % len(faults)]), "test")
                continue
            rows = []
            counts = {("source", "train"): config.train, ("target", "train"): config.target_train}
            for (domain, split), n in counts.items():
                for i in range(n):
                    rows.append((domain, split, "normal", i, clip(domain=domain)))
            for domain in ("source", "target"):
                for i in range(config.test_normal):
                    rows.append((domain, "test", "normal", i, clip(domain=domain)))
                for i in range(config.test_anomaly):
                    rows.append((domain, "test", "anomaly", i, clip(faults[i % len(faults)], domain)))
            table = []
            for domain, split, label, i, x in rows:
                attrs = _attrs(domain, mid, i)
                suffix = "" if config.year == 2021 else "_" + "_".join(f"{k}_{v}" for k, v in attrs)
                name = f"section_{mid:02d}_{domain}_{split}_{label}_{i:04d}{suffix}.wav"
                put(out / machine / split / name, x, split)
                table.append([f"{machine}/{split}/{name}"] + [s for kv in attrs for s in kv])
            if config.year >= 2022:
                with open(out / machine / f"attributes_{mid:02d}.csv", "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["file_name", "d1p", "d1v", "d2p", "d2v"])
                    w.writerows(table)
    (out / "SYNTHETIC.txt").write_text(f"{SYNTHETIC_NOTE}\nconfig: {config}\n")
    return summary
