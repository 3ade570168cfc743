"""The detector interface: fit on a group's normal clips, score clips keeping per-frame scores, decide, save/load.

Every detector (see :mod:`audiosim.anomaly.detectors`) follows one life cycle:

* ``fit(paths, labels=..., cache=..., tune=N)`` -- train on the **normal** clips of one group (a machine
  type, ID or section; ``labels`` name each clip's ID/section for the classifier detectors). ``tune=N``
  first tries N random settings of the detector's tunable options, each trained on 80 % of the clips and
  judged by its own loss on the other 20 % (normal clips only, never test labels); the best is refitted on
  all clips and the search is recorded in the model (``tuning_``).
* ``score(paths, labels=...)`` -> one :class:`ClipScores` per clip: the clip score and the per-frame scores
  (frames, stacked-frame vectors or crops, depending on the detector).
* the decision threshold is fitted on the training clips' scores as the DCASE baselines decide: a Gamma
  distribution fitted to them (``scipy.stats.gamma.fit``), threshold = its ``percentile`` (default 90)
  quantile; an empirical percentile when the Gamma fit fails (recorded in ``threshold_fit_``).
* ``save(dir)`` writes ``detector.json`` (kind, options, threshold, training scores, checksums) and
  ``detector.npz`` (weights and arrays, no pickles); :func:`load_detector` checks both checksums and every
  field, so a garbled, truncated or foreign file gives :class:`AnomalyModelError`, never a traceback.

``device`` is ``cpu`` (default) or ``cuda`` / ``cuda:N``; CUDA without a visible GPU gives
:class:`DeviceError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.anomaly.detectors.features import FeatureCache
from audiosim.errors import AnomalyModelError, DeviceError
from audiosim.files import dumps_strict, write_bytes_atomic, write_json_atomic

FORMAT = 1
META_FILE = "detector.json"
ARRAYS_FILE = "detector.npz"
MIN_CLIPS = 3
DEFAULT_PERCENTILE = 90.0
FIT_AGAIN = "fit it again (`audiosim anomaly fit-detector`)"


def resolve_device(device: str | None) -> str:
    """``cpu`` or a CUDA device torch can see; DeviceError naming the fix otherwise."""
    d = (device or "cpu").strip().lower()
    if d == "cpu":
        return d
    if d == "cuda" or d.startswith("cuda:"):
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} was requested but torch sees no CUDA GPU "
                              "(torch.cuda.is_available() is False); use --device cpu or run on a machine with a GPU")
        idx = int(d.partition(":")[2] or 0)
        if idx >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r}: only {torch.cuda.device_count()} CUDA devices are visible")
        return d
    raise DeviceError(f"unknown device {device!r}; use cpu or cuda (cuda:N)")


@dataclass(frozen=True)
class ClipScores:
    """One clip's anomaly score (higher = more anomalous) and the per-frame scores it came from."""

    score: float
    frames: np.ndarray


def gamma_threshold(scores: np.ndarray, percentile: float) -> tuple[float, dict]:
    """The ``percentile`` quantile of a Gamma fitted to ``scores`` (DCASE baseline), else the empirical one."""
    from scipy.stats import gamma

    s = np.asarray(scores, dtype=np.float64)
    empirical = float(np.percentile(s, percentile))
    if np.ptp(s) > 0:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                a, loc, scale = gamma.fit(s)
                thr = float(gamma.ppf(percentile / 100.0, a, loc=loc, scale=scale))
            except (ValueError, RuntimeError, FloatingPointError):
                thr = math.nan
        if math.isfinite(thr) and s.min() - np.ptp(s) <= thr <= s.max() + 10 * np.ptp(s):
            return thr, {"method": "gamma", "percentile": percentile, "shape": float(a), "loc": float(loc),
                         "scale": float(scale)}
    return empirical, {"method": "empirical", "percentile": percentile}


def parse_spec(text: str) -> tuple[str, dict[str, str]]:
    """``name[:key=value,...]`` -> (name, raw options)."""
    name, _, rest = text.strip().partition(":")
    opts = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise AnomalyModelError(f"bad detector option {item!r} in {text!r}; write key=value")
        opts[key.strip()] = value.strip()
    return name.strip(), opts


def _coerce(kind: str, key: str, value, default):
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return str(value).lower() in ("1", "true", "yes", "on")
            raise ValueError(value)
        if isinstance(default, int):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError(value)
            return int(float(value))
        if isinstance(default, float):
            v = float(value)
            if isinstance(value, bool) or not math.isfinite(v):
                raise ValueError(value)
            return v
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    except (ValueError, TypeError, OverflowError):
        raise AnomalyModelError(f"{kind}: option {key} takes a {type(default).__name__}, got {value!r}") from None


class Detector:
    """Base class; subclasses set ``kind``, ``defaults``, ``tunable`` and the hooks below."""

    kind = ""
    defaults: dict = {}
    tunable: dict = {}
    needs_labels = False
    choices: dict = {}

    def __init__(self, *, device: str | None = None, **options) -> None:
        unknown = set(options) - set(self.defaults) - {"percentile", "seed"}
        if unknown:
            raise AnomalyModelError(f"{self.kind} takes no option {', '.join(sorted(unknown))}; its options are "
                                    f"{', '.join(sorted(self.defaults))}, percentile, seed")
        full = {**self.defaults, "percentile": DEFAULT_PERCENTILE, "seed": 0}
        self.options = {k: _coerce(self.kind, k, options.get(k, d), d) for k, d in full.items()}
        for k, allowed in self.choices.items():
            if self.options[k] not in allowed:
                raise AnomalyModelError(f"{self.kind}: option {k} must be one of {', '.join(allowed)}, got {self.options[k]!r}")
        if not 0 < self.options["percentile"] < 100:
            raise AnomalyModelError(f"percentile must be within (0, 100), got {self.options['percentile']}")
        self._check_options()
        self.device = device or "cpu"
        self.threshold_: float | None = None
        self.threshold_fit_: dict = {}
        self.train_scores_: np.ndarray | None = None
        self.classes_: tuple[str, ...] = ()
        self.history_: list[float] = []
        self.tuning_: dict = {}
        self.n_train_ = 0
        self.fit_seconds_ = 0.0

    @property
    def spec(self) -> str:
        changed = [f"{k}={v}" for k, v in self.options.items() if k not in ("seed", "percentile") and self.defaults.get(k) != v]
        return self.kind + (":" + ",".join(changed) if changed else "")

    # ------------------------------------------------------------------ hooks
    def _check_options(self) -> None:
        pass

    def _inputs(self, paths: Sequence[str], cache: FeatureCache) -> list[np.ndarray]:
        return [cache.logmel(p) for p in paths]

    def _fit(self, inputs: list[np.ndarray], labels: list[str] | None) -> None:
        raise NotImplementedError

    def _frame_scores(self, inputs: list[np.ndarray], labels: list[str] | None) -> list[np.ndarray]:
        raise NotImplementedError

    def _val_loss(self, inputs: list[np.ndarray], labels: list[str] | None) -> float:
        raise AnomalyModelError(f"the {self.kind} detector cannot be tuned (--tune applies to trained detectors: "
                                "ae, conv_ae, gamma_vae, id_classifier, metric)")

    def _reduce(self, frames: np.ndarray) -> float:
        """A clip's score from its frame scores (the mean; the embedding detector can take max or top-k)."""
        return float(np.mean(frames))

    def _train_clip_scores(self, inputs: list[np.ndarray], labels: list[str] | None) -> np.ndarray:
        return np.array([self._reduce(f) for f in self._frame_scores(inputs, labels)])

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        raise NotImplementedError

    def _restore(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ API
    def _labels(self, labels, n: int, *, fitting: bool) -> list[str] | None:
        if labels is None:
            if self.needs_labels and (fitting or len(self.classes_) > 1):
                raise AnomalyModelError(f"the {self.kind} detector needs each clip's machine ID or section "
                                        "(labels; in the CLI: --label, or DCASE file names)")
            return None if not self.needs_labels else [self.classes_[0]] * n
        labels = [str(x) for x in labels]
        if len(labels) != n:
            raise AnomalyModelError(f"{n} clips but {len(labels)} labels")
        return labels

    def fit(self, paths: Sequence[str | Path], *, labels: Sequence[str] | None = None, cache: FeatureCache | None = None,
            tune: int = 0) -> "Detector":
        paths = [str(p) for p in paths]
        if len(paths) < MIN_CLIPS:
            raise AnomalyModelError(f"the {self.kind} detector needs at least {MIN_CLIPS} normal training clips "
                                    f"(its threshold is fitted on their scores), got {len(paths)}; add normal recordings")
        self.device = resolve_device(self.device)
        labels = self._labels(labels, len(paths), fitting=True)
        if self.needs_labels and len(set(labels)) < 2:
            raise AnomalyModelError(f"the {self.kind} detector learns to tell machine IDs/sections apart and needs "
                                    f"normal clips of at least 2 of them, got {sorted(set(labels))}; fit it per machine "
                                    "type (--fit-per machine) or use another detector")
        cache = cache or FeatureCache()
        t0 = time.perf_counter()
        inputs = self._inputs(paths, cache)
        if tune:
            self._tune(inputs, labels, int(tune))
        self.classes_ = tuple(sorted(set(labels))) if labels is not None else ()
        self._seed()
        self._fit(inputs, labels)
        self.n_train_ = len(paths)
        self.train_scores_ = np.asarray(self._train_clip_scores(inputs, labels), dtype=np.float64)
        if not np.isfinite(self.train_scores_).all():
            raise AnomalyModelError(f"the {self.kind} detector gave non-finite training scores (training diverged); "
                                    "lower the learning rate (lr=...) or check the clips")
        self.threshold_, self.threshold_fit_ = gamma_threshold(self.train_scores_, self.options["percentile"])
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _seed(self) -> None:
        try:
            import torch

            torch.manual_seed(self.options["seed"])
        except ImportError:
            pass

    def _tune(self, inputs: list[np.ndarray], labels, n_trials: int) -> None:
        if not self.tunable:
            self._val_loss(inputs, labels)  # raises the "cannot be tuned" error
        rng = np.random.default_rng(self.options["seed"])
        n = len(inputs)
        perm = rng.permutation(n)
        n_val = max(1, int(round(0.2 * n)))
        val, tr = sorted(perm[:n_val]), sorted(perm[n_val:])
        sub = (lambda idx: [labels[i] for i in idx]) if labels is not None else (lambda idx: None)
        base = dict(self.options)
        trials = []
        for t in range(n_trials):
            choice = {k: v[int(rng.integers(len(v)))] for k, v in self.tunable.items()}
            trial = type(self)(device=self.device, **{**base, **choice})
            trial.classes_ = tuple(sorted(set(sub(tr)))) if labels is not None else ()
            trial._seed()
            try:
                trial._fit([inputs[i] for i in tr], sub(tr))
                loss = float(trial._val_loss([inputs[i] for i in val], sub(val)))
            except AnomalyModelError as e:
                loss, choice = math.inf, {**choice, "error": str(e)}
            trials.append({"trial": t, "options": choice, "val_loss": loss if math.isfinite(loss) else None})
        ok = [t for t in trials if t["val_loss"] is not None]
        if not ok:
            raise AnomalyModelError(f"none of the {n_trials} tuning trials of {self.kind} trained; see the options")
        best = min(ok, key=lambda t: t["val_loss"])
        self.options.update({k: v for k, v in best["options"].items() if k != "error"})
        self.tuning_ = {"method": "random search", "trials": trials, "best": best, "validation_clips": n_val,
                        "objective": "the detector's training loss on held-out normal training clips"}

    def score(self, paths: Sequence[str | Path], *, labels: Sequence[str] | None = None,
              cache: FeatureCache | None = None) -> list[ClipScores]:
        if self.threshold_ is None:
            raise AnomalyModelError(f"the {self.kind} detector is not fitted; fit it first")
        paths = [str(p) for p in paths]
        labels = self._labels(labels, len(paths), fitting=False)
        if labels is not None and self.classes_:
            unknown = sorted(set(labels) - set(self.classes_))
            if unknown:
                raise AnomalyModelError(f"the {self.kind} detector was trained on IDs/sections {', '.join(self.classes_)}, "
                                        f"not {', '.join(unknown)}")
        self.device = resolve_device(self.device)
        frames = self._frame_scores(self._inputs(paths, cache or FeatureCache()), labels)
        return [ClipScores(score=self._reduce(np.asarray(f)), frames=np.asarray(f, dtype=np.float64)) for f in frames]

    # ------------------------------------------------------------------ save / load
    def save(self, directory: str | Path, *, extra: dict | None = None) -> Path:
        if self.threshold_ is None:
            raise AnomalyModelError(f"the {self.kind} detector is not fitted; nothing to save")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state, arrays = self._state()
        buf = io.BytesIO()
        np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
        npz = buf.getvalue()
        meta = {"format": FORMAT, "kind": self.kind, "options": self.options, "threshold": self.threshold_,
                "threshold_fit": self.threshold_fit_, "train_scores": [float(s) for s in self.train_scores_],
                "classes": list(self.classes_), "n_train": self.n_train_, "history": [float(h) for h in self.history_],
                "tuning": self.tuning_, "fit_seconds": round(self.fit_seconds_, 3), "device": self.device,
                "state": state, "extra": extra or {}, "arrays_sha256": hashlib.sha256(npz).hexdigest()}
        meta["meta_sha256"] = _digest(meta)
        write_bytes_atomic(d / ARRAYS_FILE, npz)
        write_json_atomic(d / META_FILE, meta, sort_keys=False)
        return d


def _digest(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(dumps_strict(body, indent=None, sort_keys=True).encode()).hexdigest()


def read_detector_files(directory: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a saved detector, with checksums verified; AnomalyModelError otherwise."""
    d = Path(directory)
    try:
        meta_bytes, npz_bytes = (d / META_FILE).read_bytes(), (d / ARRAYS_FILE).read_bytes()
    except OSError as e:
        raise AnomalyModelError(f"cannot read the detector in {d}: {e.strerror or e}; {FIT_AGAIN}") from None
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise AnomalyModelError(f"{d / META_FILE} is not valid JSON ({e}); the detector is damaged: {FIT_AGAIN}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AnomalyModelError(f"{d / META_FILE} is not an audiosim detector (format "
                                f"{meta.get('format') if isinstance(meta, dict) else None!r}); {FIT_AGAIN}")
    if meta.get("meta_sha256") != _digest(meta):
        raise AnomalyModelError(f"{d / META_FILE} does not match its recorded checksum (edited or corrupted); {FIT_AGAIN}")
    if meta.get("arrays_sha256") != hashlib.sha256(npz_bytes).hexdigest():
        raise AnomalyModelError(f"{d / ARRAYS_FILE} does not match the checksum in {META_FILE} (corrupted, or from "
                                f"another fit); {FIT_AGAIN}")
    try:
        with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, AttributeError, TypeError) as e:
        raise AnomalyModelError(f"{d / ARRAYS_FILE} is not a readable array archive ({e}); {FIT_AGAIN}") from None
    return meta, arrays


def restore_detector(cls, meta: dict, arrays: dict, directory: Path, *, device: str | None = None) -> Detector:
    def bad(what: str):
        raise AnomalyModelError(f"{directory}: {what}; the detector is damaged or was not written by audiosim: {FIT_AGAIN}")

    if not isinstance(meta.get("options"), dict) or not isinstance(meta.get("state"), dict):
        bad("options and state must be JSON objects")
    det = cls(device=device, **meta["options"])
    thr, scores = meta.get("threshold"), meta.get("train_scores")
    if not isinstance(thr, (int, float)) or isinstance(thr, bool) or not math.isfinite(thr):
        bad(f"threshold must be a finite number, got {thr!r}")
    if not isinstance(scores, list) or len(scores) < MIN_CLIPS or not all(isinstance(s, (int, float)) for s in scores):
        bad("train_scores must list the training clips' scores")
    det.threshold_, det.train_scores_ = float(thr), np.asarray(scores, dtype=np.float64)
    det.threshold_fit_ = meta.get("threshold_fit") or {}
    det.classes_ = tuple(str(c) for c in meta.get("classes") or ())
    det.history_ = list(meta.get("history") or [])
    det.tuning_ = meta.get("tuning") or {}
    det.n_train_ = int(meta.get("n_train") or len(scores))
    for name, a in arrays.items():
        if a.dtype.kind not in "fiub" or (a.dtype.kind == "f" and not np.isfinite(a).all()):
            bad(f"array {name} is not finite numbers")
    try:
        det._restore(meta["state"], arrays)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        bad(f"its weights cannot be rebuilt ({type(e).__name__}: {str(e)[:200]})")
    return det
