"""Regions: the hits of one file whose segments touch or overlap, merged into one time span.

A search over a segment collection returns loose segments; a long recording that matches for
10 s comes back as several adjacent (or, with ``segment_hop_s < segment_s``, overlapping) hits.
This module groups them. It is pure Python/numpy over the hits and knows nothing of storage.

Input: hits in rank order, each with a file (``path``; any hashable key works), ``offset_s``,
``duration_s`` (``None``/NaN counts as 0) and ``score``. :func:`group_hits` takes records with
those attributes (``audiosim.Hit``); :func:`region_labels` is the same grouping over arrays.

Grouping modes (:data:`GROUP_MODES`):

* ``region`` -- per file, hits sorted by start; a hit that starts no later than the end of the
  region being built (plus ``gap_s``, default 0: touching counts; 1e-6 s absorbs float rounding)
  joins it, and the region's end becomes the larger of the two ends. Hits of different files never
  merge.
* ``file``   -- one region per file, from its earliest hit start to its latest hit end (the hits
  need not touch).
* ``none``   -- every hit is its own region.

A :class:`Region` has ``start_s``, ``end_s``, the best and the mean member score, the member hits
in time order and the best member. Regions are ranked by best score -- the largest for ``cosine``
(similarity: higher is closer), the smallest for ``euclidean`` (distance: lower is closer) -- then
by mean score the same way, then by the input rank of their best hit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from audiosim.errors import RegionError
from audiosim.indexes.vectors import Metric

GROUP_MODES = ("region", "file", "none")
EPS_S = 1e-6


@dataclass(frozen=True)
class Region:
    """Consecutive or overlapping hits of one file, merged."""

    rank: int
    path: Any
    start_s: float
    end_s: float
    best_score: float
    mean_score: float
    hits: tuple
    best: Any

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    # A region reads like its best hit where a hit is expected (rank tables, "more like this").
    @property
    def score(self) -> float:
        return self.best_score

    @property
    def offset_s(self) -> float:
        return self.start_s

    @property
    def id(self):
        return getattr(self.best, "id", None)

    @property
    def label(self):
        return getattr(self.best, "label", None)

    @property
    def tags(self) -> tuple:
        return getattr(self.best, "tags", ())

    @property
    def shared_tags(self) -> tuple:
        return getattr(self.best, "shared_tags", ())

    def to_dict(self) -> dict:
        return {"rank": self.rank, "path": self.path, "start_s": self.start_s, "end_s": self.end_s,
                "best_score": self.best_score, "mean_score": self.mean_score, "n_hits": len(self.hits),
                "id": self.id, "label": self.label, "hits": [_hit_dict(h) for h in self.hits]}


def check_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`GROUP_MODES`, else a :class:`RegionError` naming them."""
    if mode not in GROUP_MODES:
        raise RegionError(f"unknown grouping {mode!r}; use one of {', '.join(GROUP_MODES)}")
    return mode


def higher_is_closer(metric: str) -> bool:
    """True for ``cosine`` (similarity), False for ``euclidean`` (distance)."""
    return Metric.parse(metric).higher_is_closer


def region_labels(files: Sequence[Hashable], offsets_s: np.ndarray, durations_s: np.ndarray, *,
                  mode: str = "region", gap_s: float = 0.0) -> np.ndarray:
    """The region number (0, 1, ... in order of first appearance in the input) of every hit: int64 [n]."""
    check_mode(mode)
    starts, ends = _spans(offsets_s, durations_s)
    n = starts.size
    if len(files) != n:
        raise RegionError(f"{len(files)} files for {n} hits")
    if gap_s < 0:
        raise RegionError(f"gap_s must be >= 0, got {gap_s}")
    raw = np.empty(n, dtype=np.int64)
    if mode == "none":
        raw[:] = np.arange(n)
    else:
        codes: dict = {}
        file_code = np.array([codes.setdefault(f, len(codes)) for f in files], dtype=np.int64)
        if mode == "file":
            raw[:] = file_code
        else:
            order = np.lexsort((np.arange(n), starts, file_code))
            label, end, last_file = -1, -np.inf, None
            for i in order:
                if file_code[i] != last_file or starts[i] > end + gap_s + EPS_S:
                    label, end, last_file = label + 1, ends[i], file_code[i]
                else:
                    end = max(end, ends[i])
                raw[i] = label
    first_seen: dict = {}
    return np.array([first_seen.setdefault(int(r), len(first_seen)) for r in raw], dtype=np.int64)


def group_hits(hits: Sequence[Any], *, mode: str = "region", metric: str = "cosine",
               gap_s: float = 0.0) -> list[Region]:
    """Merge hit records (attributes ``path``, ``offset_s``, ``duration_s``, ``score``) into ranked regions."""
    hits = list(hits)
    if not hits:
        check_mode(mode)
        return []
    labels = region_labels([h.path for h in hits], np.array([h.offset_s for h in hits], dtype=np.float64),
                           np.array([_duration(h.duration_s) for h in hits], dtype=np.float64),
                           mode=mode, gap_s=gap_s)
    scores = np.array([h.score for h in hits], dtype=np.float64)
    sign = 1.0 if higher_is_closer(metric) else -1.0
    starts, ends = _spans(np.array([h.offset_s for h in hits], dtype=np.float64),
                          np.array([_duration(h.duration_s) for h in hits], dtype=np.float64))
    groups = []
    for label in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == label)
        best = members[np.argmax(sign * scores[members])]  # first (best-ranked) among equals
        in_time = members[np.lexsort((members, starts[members]))]
        groups.append((-sign * scores[best], -sign * scores[members].mean(), int(best), members, in_time))
    groups.sort(key=lambda g: (g[0], g[1], g[2]))
    out = []
    for rank, (_, _, best, members, in_time) in enumerate(groups, 1):
        out.append(Region(rank=rank, path=hits[best].path, start_s=float(starts[members].min()),
                          end_s=float(ends[members].max()), best_score=float(scores[best]),
                          mean_score=float(scores[members].mean()), hits=tuple(hits[i] for i in in_time),
                          best=hits[best]))
    return out


def _duration(d) -> float:
    return 0.0 if d is None else float(d)


def _spans(offsets_s, durations_s) -> tuple[np.ndarray, np.ndarray]:
    starts = np.asarray(offsets_s, dtype=np.float64).reshape(-1)
    dur = np.asarray(durations_s, dtype=np.float64).reshape(-1)
    if starts.shape != dur.shape:
        raise RegionError(f"{starts.size} offsets for {dur.size} durations")
    dur = np.where(np.isnan(dur), 0.0, dur)
    if (dur < 0).any() or not np.isfinite(starts).all() or not np.isfinite(dur).all():
        raise RegionError("hit offsets must be finite and durations finite and >= 0")
    return starts, starts + dur


def _hit_dict(hit) -> dict:
    if hasattr(hit, "to_dict"):
        return hit.to_dict()
    return {k: getattr(hit, k) for k in ("path", "offset_s", "duration_s", "score") if hasattr(hit, k)}
