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
``votes`` (the support), ``agreement`` = votes / number of query segments, ``confidence`` = the
margin of its *weighted* support over the best *other* location's -- another file's best bin, or
a bin of the same file farther than ``2 * tolerance_bins + 1`` bins away -- divided by the number
of query segments. A vote weighs 1 / its rank among its query segment's matches, so a place that is
every segment's best match scores 1, and two places that match equally well split the first ranks
and score about 0 (a large ``top_m`` in a homogeneous recording gives every place some support;
the ranks tell the real one apart),
and the mean and best score of the supporting matches. Files are ranked by votes, then by mean score (higher first
for ``cosine``, lower first for ``euclidean``), then by first appearance.

:func:`vote_places` ranks candidate *places* over all files instead (several per file when the
excerpt's sound recurs), for :mod:`audiosim.engine.search.excerpt` to check on the audio.

The query must be cut on the collection's grid, the one the ingest pipeline uses
(:mod:`audiosim.engine.ingest.segments`). Pure numpy; it knows nothing of storage or search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from audiosim.errors import LocateError
from audiosim.indexes.vectors import Metric

TOLERANCE_BINS = 1


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
    agreement: float = 0.0  # votes / n_segments
    refined: bool = False  # offset_s refined beyond the vote (:mod:`audiosim.engine.search.refine`)
    verified: float | None = None  # the print correlation at offset_s (checked on the audio); None: votes only
    scanned: bool = False  # found by scanning the recording's audio, not among the voted places

    def to_dict(self) -> dict:
        return {"rank": self.rank, "path": self.path, "offset_s": self.offset_s, "end_s": self.end_s,
                "votes": self.votes, "n_segments": self.n_segments, "confidence": self.confidence,
                "agreement": self.agreement, "refined": self.refined, "verified": self.verified,
                "scanned": self.scanned,
                "mean_score": self.mean_score, "best_score": self.best_score}


# --------------------------------------------------------------------------- voting
def _vote_arrays(query_index, files, match_offset_s, scores, query_offsets_s, *, hop_s: float,
                 tolerance_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The vote arrays as flat numpy arrays ``(query_index, match_offset_s, scores, query_offsets_s)``, checked:
    equal lengths, indices of real query segments, ``hop_s > 0``, ``tolerance_bins >= 0``, finite values."""
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
    return q, c, s, qoff


def vote_offsets(query_index: np.ndarray, files: Sequence[Hashable], match_offset_s: np.ndarray,
                 scores: np.ndarray, query_offsets_s: np.ndarray, *, hop_s: float, metric: str = "cosine",
                 query_duration_s: float | None = None, tolerance_bins: int = TOLERANCE_BINS,
                 max_files: int | None = None) -> list[Location]:
    """Locations from flat vote arrays: vote ``j`` says query segment ``query_index[j]`` matched
    ``files[j]`` at ``match_offset_s[j]`` with ``scores[j]``.

    ``query_offsets_s`` holds the start of every query segment (its length is the number of query
    segments); ``query_duration_s`` (default: last segment start + hop) sets ``end_s``.
    """
    q, c, s, qoff = _vote_arrays(query_index, files, match_offset_s, scores, query_offsets_s, hop_s=hop_s,
                                 tolerance_bins=tolerance_bins)
    sign = 1.0 if Metric.parse(metric).higher_is_closer else -1.0
    n_q = max(int(qoff.size), 1)
    if query_duration_s is None:
        query_duration_s = float(qoff.max()) + hop_s if qoff.size else 0.0
    offsets = c - qoff[q] if q.size else c
    bins = np.rint(offsets / hop_s).astype(np.int64)
    codes: dict = {}
    file_code = np.array([codes.setdefault(f, len(codes)) for f in files], dtype=np.int64)
    weight = _rank_weights(q, sign * s)
    found, runner_up, weighted = [], {}, {}
    for f, code in codes.items():
        idx = np.flatnonzero(file_code == code)
        rows, weighted[f], runner_up[f] = _best_bin(q[idx], bins[idx], sign * s[idx], tolerance_bins, weight[idx])
        support = idx[rows]
        found.append((-int(support.size), -sign * float(s[support].mean()), int(idx[0]), f, support))
    found.sort(key=lambda t: t[:3])
    out = []
    for rank, (_, _, _, f, support) in enumerate(found[:max_files] if max_files else found, 1):
        other = max([runner_up[f]] + [weighted[g] for g in weighted if g != f])
        margin = min(max(weighted[f] - other, 0.0), float(n_q))
        support = support[np.argsort(q[support], kind="stable")]
        offset = float(offsets[support].mean())
        best_score = float(s[support][np.argmax(sign * s[support])])
        out.append(Location(rank=rank, path=f, offset_s=offset, end_s=offset + float(query_duration_s),
                            votes=int(support.size), n_segments=int(qoff.size),
                            confidence=margin / n_q, mean_score=float(s[support].mean()),
                            best_score=best_score, agreement=float(support.size) / n_q,
                            support=tuple(Vote(float(qoff[q[j]]), float(c[j]), float(s[j])) for j in support)))
    return out


def _rank_weights(q: np.ndarray, goodness: np.ndarray) -> np.ndarray:
    """Each vote's weight: 1 / its rank among the votes of its query segment (best = 1)."""
    w = np.zeros(q.size)
    for qq in np.unique(q):
        mine = np.flatnonzero(q == qq)
        order = mine[np.argsort(-goodness[mine], kind="stable")]
        w[order] = 1.0 / np.arange(1, order.size + 1)
    return w


def _best_bin(q: np.ndarray, bins: np.ndarray, goodness: np.ndarray, tol: int,
              weight: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(positions of the votes supporting the best bin, one per query segment; that bin's weighted support;
    the best weighted support of a bin farther than ``2 * tol + 1`` bins from it, whose votes cannot
    overlap the best one's)."""
    best_key, best_rows, supports = None, None, {}
    for b in np.unique(bins):
        inside = np.flatnonzero(np.abs(bins - b) <= tol)
        rows = []
        for qq in np.unique(q[inside]):
            mine = inside[q[inside] == qq]
            rows.append(mine[np.argmax(goodness[mine])])  # the query segment's best match in the window
        rows = np.array(rows, dtype=np.int64)
        key = (len(rows), float(goodness[rows].mean()), -int(b))
        supports[int(b)] = float(sum(weight[inside[q[inside] == qq]].max() for qq in np.unique(q[inside])))
        if best_key is None or key > best_key:
            best_key, best_rows = key, rows
    far = [w for b, w in supports.items() if abs(b + best_key[2]) > 2 * tol + 1]
    return best_rows, supports[-best_key[2]], max(far, default=0.0)


@dataclass(frozen=True)
class Place:
    """A candidate place of the excerpt: a file and an offset, with the support of the votes there."""

    path: Any
    offset_s: float
    votes: int  # distinct query segments with a vote within ``tolerance_bins`` of the place's bin
    weight: float  # their rank-weighted support (each query segment's best vote there weighs 1 / its rank)
    mean_score: float
    best_score: float


def vote_places(query_index: np.ndarray, files: Sequence[Hashable], match_offset_s: np.ndarray, scores: np.ndarray,
                query_offsets_s: np.ndarray, *, hop_s: float, metric: str = "cosine",
                tolerance_bins: int = TOLERANCE_BINS, max_places: int = 8) -> list[Place]:
    """The ``max_places`` best-supported places over all files, best first (same vote arrays as :func:`vote_offsets`).

    Places are ranked by rank-weighted support, then by votes; a place's ``offset_s`` is the mean
    of its supporting votes' offsets (each query segment's best match within ``tolerance_bins``).
    Two places of one file are more than ``2 * tolerance_bins + 1`` bins apart, so their votes
    never overlap: a recording where the excerpt's sound recurs gives one place per recurrence.
    """
    q, c, s, qoff = _vote_arrays(query_index, files, match_offset_s, scores, query_offsets_s, hop_s=hop_s,
                                 tolerance_bins=tolerance_bins)
    if not q.size:
        return []
    sign = 1.0 if Metric.parse(metric).higher_is_closer else -1.0
    codes: dict = {}
    fc = np.array([codes.setdefault(f, len(codes)) for f in files], dtype=np.int64)
    names = list(codes)
    offsets = c - qoff[q]
    bins = np.rint(offsets / hop_s).astype(np.int64)
    good = sign * s
    weight = _rank_weights(q, good)
    # every vote counts for the bins within the tolerance of its own: rows (file, window bin, query segment, vote)
    d = np.arange(-tolerance_bins, tolerance_bins + 1)
    vote = np.repeat(np.arange(q.size), d.size)
    wbin = (bins[:, None] + d[None, :]).reshape(-1)
    # per (file, window bin, query segment) keep the best vote (highest goodness first)
    order = np.lexsort((-good[vote], q[vote], wbin, fc[vote]))
    vote, wbin = vote[order], wbin[order]
    key = np.stack([fc[vote], wbin, q[vote]], axis=1)
    first = np.ones(vote.size, dtype=bool)
    first[1:] = (key[1:] != key[:-1]).any(axis=1)
    vote, wbin = vote[first], wbin[first]
    place_key = np.stack([fc[vote], wbin], axis=1)
    uniq, start = np.unique(place_key, axis=0, return_index=True)  # rows are sorted by (file, bin) already
    bounds = np.append(start, vote.size)
    support_w = np.add.reduceat(weight[vote], start)  # the kept vote is its segment's best there: the best weight
    n_votes = np.diff(bounds)
    ranked = np.lexsort((-n_votes, -support_w))
    out: list[Place] = []
    taken: dict[int, list[int]] = {}
    for i in ranked:
        f, b = int(uniq[i][0]), int(uniq[i][1])
        if any(abs(b - t) <= 2 * tolerance_bins + 1 for t in taken.get(f, [])):
            continue
        taken.setdefault(f, []).append(b)
        rows = vote[bounds[i]:bounds[i + 1]]
        out.append(Place(path=names[f], offset_s=float(offsets[rows].mean()), votes=int(rows.size),
                         weight=float(support_w[i]), mean_score=float(s[rows].mean()),
                         best_score=float(s[rows][np.argmax(good[rows])])))
        if len(out) == max_places:
            break
    return out


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


# --------------------------------------------------------------------------- the query's noise floor
FLOOR_PERCENTILE = 10.0  # the query's noise floor: this percentile of its frames' RMS levels
FLOOR_MARGIN_DB = 6.0  # frames within this many dB of the floor are the floor, not sound
MIN_DYNAMIC_RANGE_DB = 15.0  # ... only when the loud frames (90th percentile) stand this far above it
MAX_FLOOR_DBFS = -40.0  # ... and the floor is faint: a louder bed is the recording's own sound, kept


def quiet_frames(wave: np.ndarray, times_s: np.ndarray, *, window_s: float, sample_rate: int) -> np.ndarray:
    """Boolean [T]: the query frames that hold only its noise floor (the gaps of a re-recorded excerpt).

    Where the indexed recording has digital silence (left out of its segments' pooling), a
    degraded excerpt has a noise floor; pooling those frames into a query segment would pull it
    away from the stored segment, and a segment of floor alone would vote at random. A frame is
    the floor when its RMS level (dB) lies within :data:`FLOOR_MARGIN_DB` of the query's
    :data:`FLOOR_PERCENTILE` th percentile, the query has quiet stretches at all (its 90th
    percentile is :data:`MIN_DYNAMIC_RANGE_DB` above that floor) and the floor is below
    :data:`MAX_FLOOR_DBFS` (dBFS of a sine's RMS; a louder bed is sound). Digital silence is the floor too.
    """
    t = np.asarray(times_s, dtype=np.float64)
    n = max(int(round(window_s * sample_rate)), 1)
    level = np.empty(t.size)
    for i, start in enumerate(np.rint(t * sample_rate).astype(np.int64)):
        w = np.asarray(wave[max(start, 0): max(start, 0) + n], dtype=np.float64)
        level[i] = 10 * np.log10(max(float((w * w).mean()) if w.size else 0.0, 1e-20))
    if level.size == 0:
        return np.zeros(0, dtype=bool)
    floor, loud = np.percentile(level, FLOOR_PERCENTILE), np.percentile(level, 90.0)
    if loud - floor < MIN_DYNAMIC_RANGE_DB or floor > MAX_FLOOR_DBFS:
        return level <= -190.0  # no quiet stretches: only digital silence
    return level < floor + FLOOR_MARGIN_DB
