"""Excerpt location: where in a long recording a query longer than one segment was cut from.

A query longer than one segment is cut into the collection's segments (``segment_s`` every
``hop_s``, :func:`segment_grid`); each query segment is searched on its own, and each of its top
matches votes for a time offset of the excerpt inside the matched file::

    offset = collection time of the match - query time of the query segment

If the query is an excerpt of file F starting at time t0, every query segment's true match lies in
F at its own query time + t0, so the votes pile up at t0, while chance matches scatter. Per file:

1. votes are binned at the hop (bin = round(offset / hop_s)); a query segment counts once per bin
   (its best match there);
2. each bin's support is the number of distinct query segments with a vote within
   ``tolerance_bins`` bins of it (default 1: an excerpt that does not start on the hop grid
   splits its votes over two neighbouring bins);
3. the file's offset is the bin with the largest support, ties broken by the better mean score of
   the supporting matches, then by the earlier offset; the reported ``offset_s`` is the mean of the
   supporting votes' offsets (each query segment's best match in the window), which lands between
   grid points when the votes split.

Each file gets one :class:`Location`: ``offset_s``, ``end_s`` (offset + query duration),
``votes`` (the support), ``confidence`` = votes / number of query segments, and the mean and
best score of the supporting matches. Files are ranked by votes, then by mean score (higher first
for ``cosine``, lower first for ``euclidean``), then by first appearance.

The query must be cut on the collection's grid: :func:`segment_grid` (segment start times and
durations; the same grid as the ingest pipeline's ``engine.mappers.segment_spans``),
:func:`frames_in_segments` / :func:`segments_with_frames` (which embedder frames each segment
pools: those whose start time lies in it, as ``engine.mappers.segment_frames``) and
:func:`cut_waveform` (the query's samples per segment, for embedding segments one by one).
Pure numpy; it knows nothing of storage or search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from audiosim.errors import AudiosimError
from audiosim.indexes.vectors import canonical_metric

EPS_S = 1e-9
TOLERANCE_BINS = 1


class LocateError(AudiosimError):
    """Bad segment settings or mismatched vote arrays."""


@dataclass(frozen=True)
class Vote:
    """One query segment's match that supports a location."""

    query_offset_s: float
    match_offset_s: float
    score: float

    @property
    def offset_s(self) -> float:
        return self.match_offset_s - self.query_offset_s


@dataclass(frozen=True)
class Location:
    """Where the excerpt sits in one file, and how sure the votes are."""

    rank: int
    path: Any
    offset_s: float
    end_s: float
    votes: int
    n_segments: int
    confidence: float
    mean_score: float
    best_score: float
    support: tuple[Vote, ...]

    def to_dict(self) -> dict:
        return {"rank": self.rank, "path": self.path, "offset_s": self.offset_s, "end_s": self.end_s,
                "votes": self.votes, "n_segments": self.n_segments, "confidence": self.confidence,
                "mean_score": self.mean_score, "best_score": self.best_score}


# --------------------------------------------------------------------------- the segment grid
def check_segments(segment_s: float, hop_s: float | None) -> float:
    """``hop_s`` (``segment_s`` when None) after checking 0 < hop_s <= segment_s."""
    hop = segment_s if hop_s is None else hop_s
    if not (segment_s > 0 and math.isfinite(segment_s)):
        raise LocateError(f"segment_s must be a positive number of seconds, got {segment_s}")
    if not (0 < hop <= segment_s):
        raise LocateError(f"segment hop must be in (0, segment_s={segment_s}], got {hop}")
    return float(hop)


def segment_grid(duration_s: float, *, segment_s: float, hop_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start times and durations (float64) of the segments of a ``duration_s`` recording.

    The ingest pipeline's grid (``engine.mappers.segment_spans``): segments of ``segment_s``
    start at 0, hop, 2 hop, ... while the start lies inside the recording (at least one segment),
    and each duration is cut at the end of the recording. ``hop_s`` defaults to ``segment_s``.
    """
    hop = check_segments(segment_s, hop_s)
    duration_s = max(float(duration_s), 0.0)
    n = max(1, math.ceil(max(duration_s, 1e-12) / hop - EPS_S))
    offsets = np.arange(n, dtype=np.float64) * hop
    return offsets, np.minimum(segment_s, duration_s - offsets).clip(min=0.0)


def frames_in_segments(times_s: np.ndarray, offsets_s: np.ndarray, *, segment_s: float) -> list[np.ndarray]:
    """Per segment, the indices of the frames whose start time lies in [offset, offset + segment_s).

    The pipeline's rule (``engine.mappers.segment_frames``). A segment can come back empty (a
    tail shorter than the frame hop): skip it, as :func:`segments_with_frames` does.
    """
    t = np.asarray(times_s, dtype=np.float64)
    out = []
    for off in np.asarray(offsets_s, dtype=np.float64):
        lo = np.searchsorted(t, off - EPS_S, side="left")
        hi = np.searchsorted(t, off + segment_s - EPS_S, side="left")
        out.append(np.arange(lo, hi, dtype=np.int64))
    return out


def segments_with_frames(times_s: np.ndarray, duration_s: float, *, segment_s: float,
                         hop_s: float | None = None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The segments of a recording that hold at least one frame start: (offsets_s, durations_s, frame indices).

    When none does (a recording shorter than one embedder hop), its frames form one segment
    ``(0, duration_s)``, as in the pipeline.
    """
    offsets, durations = segment_grid(duration_s, segment_s=segment_s, hop_s=hop_s)
    members = frames_in_segments(times_s, offsets, segment_s=segment_s)
    keep = [i for i, m in enumerate(members) if m.size]
    if not keep:
        return (np.zeros(1), np.array([max(float(duration_s), 0.0)]),
                [np.arange(np.asarray(times_s).size, dtype=np.int64)])
    return offsets[keep], durations[keep], [members[i] for i in keep]


def cut_waveform(waveform: np.ndarray, sample_rate: int, *, segment_s: float,
                 hop_s: float | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """The query's samples per segment of :func:`segment_grid` and the segments' query-time offsets (s).

    Segments are views into ``waveform``; the last one may be shorter than ``segment_s``.
    """
    x = np.asarray(waveform)
    if x.ndim != 1:
        raise LocateError(f"cut_waveform takes a mono 1-D waveform, got shape {x.shape}")
    if sample_rate <= 0:
        raise LocateError(f"sample_rate must be positive, got {sample_rate}")
    offsets, durations = segment_grid(x.size / sample_rate, segment_s=segment_s, hop_s=hop_s)
    pieces = []
    for off, dur in zip(offsets, durations):
        start = int(round(off * sample_rate))
        pieces.append(x[start:start + max(1, int(round(dur * sample_rate)))])
    return pieces, offsets


# --------------------------------------------------------------------------- voting
def vote_offsets(query_index: np.ndarray, files: Sequence[Hashable], match_offset_s: np.ndarray,
                 scores: np.ndarray, query_offsets_s: np.ndarray, *, hop_s: float, metric: str = "cosine",
                 query_duration_s: float | None = None, tolerance_bins: int = TOLERANCE_BINS,
                 max_files: int | None = None) -> list[Location]:
    """Locations from flat vote arrays: vote ``j`` says query segment ``query_index[j]`` matched
    ``files[j]`` at ``match_offset_s[j]`` with ``scores[j]``.

    ``query_offsets_s`` holds the start of every query segment (its length is the number of query
    segments); ``query_duration_s`` (default: last segment start + hop) sets ``end_s``.
    """
    q = np.asarray(query_index, dtype=np.int64).reshape(-1)
    c = np.asarray(match_offset_s, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    qoff = np.asarray(query_offsets_s, dtype=np.float64).reshape(-1)
    if not (q.size == c.size == s.size == len(files)):
        raise LocateError(f"vote arrays differ in length: {q.size}, {len(files)}, {c.size}, {s.size}")
    if q.size and (q.min() < 0 or q.max() >= qoff.size):
        raise LocateError(f"query_index must lie in [0, {qoff.size}) (one entry per query segment)")
    if not (hop_s > 0) or tolerance_bins < 0:
        raise LocateError(f"need hop_s > 0 and tolerance_bins >= 0, got {hop_s} and {tolerance_bins}")
    if not (np.isfinite(c).all() and np.isfinite(s).all()):
        raise LocateError("match offsets and scores must be finite")
    sign = 1.0 if canonical_metric(metric) == "cosine" else -1.0
    n_q = max(int(qoff.size), 1)
    if query_duration_s is None:
        query_duration_s = float(qoff.max()) + hop_s if qoff.size else 0.0
    offsets = c - qoff[q] if q.size else c
    bins = np.rint(offsets / hop_s).astype(np.int64)
    codes: dict = {}
    file_code = np.array([codes.setdefault(f, len(codes)) for f in files], dtype=np.int64)
    found = []
    for f, code in codes.items():
        idx = np.flatnonzero(file_code == code)
        support = idx[_best_bin(q[idx], bins[idx], sign * s[idx], tolerance_bins)]
        found.append((-int(support.size), -sign * float(s[support].mean()), int(idx[0]), f, support))
    found.sort(key=lambda t: t[:3])
    out = []
    for rank, (_, _, _, f, support) in enumerate(found[:max_files] if max_files else found, 1):
        support = support[np.argsort(q[support], kind="stable")]
        offset = float(offsets[support].mean())
        best_score = float(s[support][np.argmax(sign * s[support])])
        out.append(Location(rank=rank, path=f, offset_s=offset, end_s=offset + float(query_duration_s),
                            votes=int(support.size), n_segments=int(qoff.size),
                            confidence=float(support.size) / n_q, mean_score=float(s[support].mean()),
                            best_score=best_score,
                            support=tuple(Vote(float(qoff[q[j]]), float(c[j]), float(s[j])) for j in support)))
    return out


def _best_bin(q: np.ndarray, bins: np.ndarray, goodness: np.ndarray, tol: int) -> np.ndarray:
    """Positions (into the given arrays) of the votes supporting the best bin: one per query segment."""
    best_key, best_rows = None, None
    for b in np.unique(bins):
        inside = np.flatnonzero(np.abs(bins - b) <= tol)
        rows = []
        for qq in np.unique(q[inside]):
            mine = inside[q[inside] == qq]
            rows.append(mine[np.argmax(goodness[mine])])  # the query segment's best match in the window
        rows = np.array(rows, dtype=np.int64)
        key = (len(rows), float(goodness[rows].mean()), -int(b))
        if best_key is None or key > best_key:
            best_key, best_rows = key, rows
    return best_rows


def locate(query_offsets_s: np.ndarray, hits_per_segment: Sequence[Sequence[Any]], *, hop_s: float,
           metric: str = "cosine", query_duration_s: float | None = None, tolerance_bins: int = TOLERANCE_BINS,
           max_files: int | None = None) -> list[Location]:
    """Locations from the search results of each query segment.

    ``hits_per_segment[i]`` holds the top matches of the query segment starting at
    ``query_offsets_s[i]``: records with ``path``, ``offset_s`` and ``score`` (``audiosim.Hit``);
    exactly what ``Searcher.search`` returns for a batch of segment vectors.
    """
    qoff = np.asarray(query_offsets_s, dtype=np.float64).reshape(-1)
    if len(hits_per_segment) != qoff.size:
        raise LocateError(f"{len(hits_per_segment)} hit lists for {qoff.size} query segments")
    q = [i for i, hits in enumerate(hits_per_segment) for _ in hits]
    flat = [h for hits in hits_per_segment for h in hits]
    return vote_offsets(np.array(q, dtype=np.int64), [h.path for h in flat],
                        np.array([h.offset_s for h in flat], dtype=np.float64),
                        np.array([h.score for h in flat], dtype=np.float64), qoff, hop_s=hop_s, metric=metric,
                        query_duration_s=query_duration_s, tolerance_bins=tolerance_bins, max_files=max_files)
