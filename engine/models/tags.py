"""Tags: what a sound *is*, from an embedder's classifier head (AudioSet classes for YAMNet and PANNs).

Everything here is a plain function over numpy arrays (pyarrow only inside the two storage helpers),
so the ingest pipeline, the searcher, the CLI and the benchmark share one definition.

* **Scores per stored vector** -- :func:`pool_scores`: the embedder gives class scores per frame
  (``Embedder.embed_frames_with_scores``); a stored vector (a clip, or a segment) gets, per class,
  the *maximum* over the frames its embedding was pooled from (``how="mean"``: the mean). Pass the
  same frame sets that went into the embedding pooling (a clip vector: all frames; a segment: the
  frames whose start time lies in the segment). Max by default because an AudioSet label means
  "this sound occurs in the clip": a 0.5 s sneeze in a 5 s clip is a sneeze clip, and the mean
  dilutes it with the silence around it. Measured on ESC-50 with YAMNet (``eval/tag_bench.py``):
  tag-search precision@10 0.806 with max, 0.781 with mean (mean wins for steady sounds such as
  wind and engines, max for short events).
* **Stored tags** -- :func:`top_tags`: the :data:`TOP_N` = 10 best classes of each vector, as class
  indices (int16) and scores (float32), best first, ties to the lower class index. Ten rather than
  five so that ranking a collection by one class (``query --tag``) finds every vector where that
  class is among the ten likeliest. :func:`tags_to_arrow` / :func:`tags_from_arrow` turn them into
  the ``tags`` column (``list<struct<class: int16, score: float32>>``) and back; a row without tags
  (a null, or a collection made before tags existed) reads back as class ``-1``, score NaN.
* **Tag names** -- :class:`ClassMap`: the head's class names in score-column order, its
  :attr:`ClassMap.sha256` (what a collection records), and :meth:`ClassMap.resolve`, which accepts
  an exact class display name in any letter case; anything else is an :class:`UnknownTagError`
  listing close names (difflib, plus names contained in the query or containing it).
* **Search by tag** -- :func:`rank_by_tag`: the vectors whose stored tags hold the class, ranked by
  its score (higher first; ties to the lower row); vectors without it are not returned.
  :func:`has_tag` is the matching filter for example queries.
* **Why similar** -- :func:`shared_tags`: the classes in both a query's and a hit's tags (never one that
  only describes padding, :data:`PADDING_TAGS`), ranked by
  the smaller of the two scores.
* **Tag counts** -- :func:`tag_counts`: per class, how many vectors hold it among their stored tags
  with a score of at least ``min_score`` (default :data:`COUNT_MIN_SCORE` = 0.2: on ESC-50 with
  YAMNet and max pooling, 78 % of the clips of a mapped category reach 0.2 on its AudioSet class
  and 1.9 % of the other clips do, averaged over the 47 mapped categories).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from audiosim.engine.models.embedders.base import Embedder, class_names_sha256
from audiosim.errors import TagDataError, UnknownTagError

TOP_N = 10
SCORE_POOLINGS = ("max", "mean")
SCORE_POOLING = "max"
COUNT_MIN_SCORE = 0.2
MAX_SUGGESTIONS = 8
NO_TAG = -1
# Classes that describe the absence of sound (the zero padding of short clips, gaps in recordings):
# two clips sharing them are not alike for it, so "why similar" never shows them (casefolded names).
PADDING_TAGS = frozenset({"silence"})


@dataclass(frozen=True)
class Tag:
    """One class of a vector's tags."""

    name: str
    index: int
    score: float

    def to_dict(self) -> dict:
        return {"name": self.name, "index": self.index, "score": self.score}


@dataclass(frozen=True)
class SharedTag:
    """A class that a query and a hit both carry ("why similar")."""

    name: str
    index: int
    query_score: float
    hit_score: float

    def to_dict(self) -> dict:
        return {"name": self.name, "index": self.index, "query_score": self.query_score, "hit_score": self.hit_score}


@dataclass(frozen=True)
class ClassMap:
    """The class names of a classifier head, index = score column."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.names or any(not isinstance(n, str) or not n for n in self.names):
            raise TagDataError("a class map needs at least one class and no empty names")

    @classmethod
    def of(cls, embedder: Embedder) -> "ClassMap | None":
        """The embedder's class map, or ``None`` when it has no classifier head."""
        names = embedder.class_names()
        return None if names is None else cls(tuple(names))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def sha256(self) -> str:
        """:func:`audiosim.engine.models.embedders.base.class_names_sha256` of the names (what a collection records)."""
        return class_names_sha256(self.names)

    def resolve(self, name: str) -> int:
        """The class index of ``name``: an exact display name, letter case ignored; else :class:`UnknownTagError`."""
        wanted = str(name).strip().casefold()
        for i, n in enumerate(self.names):
            if n.casefold() == wanted:
                return i
        found = suggest(name, self.names)
        hint = f" (did you mean {', '.join(repr(s) for s in found)}?)" if found else ""
        raise UnknownTagError(
            f"unknown tag {str(name)!r}{hint}. Tags are the exact class names of the classifier "
            f"({len(self.names)} AudioSet display names for YAMNet/PANNs; letter case does not matter); "
            "`audiosim tags` lists the ones in a collection",
            name=str(name), suggestions=found)

    def tags(self, ids: np.ndarray, scores: np.ndarray) -> list[Tag]:
        """One vector's stored tags (a row of :func:`top_tags`) as named :class:`Tag` records; padding dropped."""
        ids = np.asarray(ids).reshape(-1)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        return [Tag(self.names[int(i)], int(i), float(s)) for i, s in zip(ids, scores) if 0 <= i < len(self.names)]

    def describe(self, pooled: np.ndarray, *, n: int = TOP_N) -> list[Tag]:
        """The top ``n`` :class:`Tag` of one score vector [C] (e.g. a query's pooled scores)."""
        ids, scores = top_tags(np.asarray(pooled)[None, :], n=n)
        return self.tags(ids[0], scores[0])


def suggest(name: str, names: Sequence[str], *, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """Class names close to ``name``: difflib matches (any case), then names contained in it or containing it."""
    query = str(name).strip().casefold()
    folded = [n.casefold() for n in names]
    close = difflib.get_close_matches(query, folded, n=limit, cutoff=0.6)
    out = [names[folded.index(c)] for c in close]
    if len(query) >= 3:
        words = {w for w in _words(query) if len(w) >= 3}
        for n, f in zip(names, folded):
            if query in f or f in query or words & _words(f):
                out.append(n)
    return list(dict.fromkeys(out))[:limit]


def _words(text: str) -> set[str]:
    return set("".join(c if c.isalnum() else " " for c in text).split())


def pool_scores(scores: np.ndarray, members: Sequence[np.ndarray] | None = None, *,
                how: str = SCORE_POOLING) -> np.ndarray:
    """One score vector per stored vector: per class, the max (or ``how="mean"``) over each vector's frames.

    ``scores`` is [T, C]. ``members[i]`` selects the frames of vector ``i`` (indices or a boolean
    mask over the T frames); ``None`` means one vector over all frames. A vector with no frame is a
    :class:`TagDataError` (the embedding of such a vector could not have been pooled either).
    Returns float32 [len(members), C].
    """
    if how not in SCORE_POOLINGS:
        raise TagDataError(f"unknown class-score pooling {how!r}; use one of {', '.join(SCORE_POOLINGS)}")
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 2 or s.shape[0] == 0:
        raise TagDataError(f"class scores must be [frames, classes] with at least one frame, got shape {s.shape}")
    reduce = np.max if how == "max" else np.mean
    if members is None:
        return reduce(s, axis=0, keepdims=True).astype(np.float32)
    out = np.empty((len(members), s.shape[1]), dtype=np.float32)
    for i, m in enumerate(members):
        rows = s[np.asarray(m)]
        if rows.shape[0] == 0:
            raise TagDataError(f"vector {i} has no frames to pool class scores from")
        out[i] = reduce(rows, axis=0)
    return out


def top_tags(pooled: np.ndarray, *, n: int = TOP_N) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best classes per row of ``pooled`` [rows, C]: (class indices int16, scores float32), best first."""
    p = np.asarray(pooled, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] == 0:
        raise TagDataError(f"pooled class scores must be [vectors, classes], got shape {p.shape}")
    if p.shape[1] > np.iinfo(np.int16).max:
        raise TagDataError(f"{p.shape[1]} classes do not fit the int16 class index of stored tags")
    if not np.isfinite(p).all():
        raise TagDataError("class scores contain NaN or infinity")
    n = max(1, min(int(n), p.shape[1]))
    order = np.argsort(-p, axis=1, kind="stable")[:, :n]
    return order.astype(np.int16), np.take_along_axis(p, order, axis=1)


def vector_tags(scores: np.ndarray, members: Sequence[np.ndarray] | None = None, *, n: int = TOP_N,
                how: str = SCORE_POOLING) -> tuple[np.ndarray, np.ndarray]:
    """The stored tags of a file's vectors in one call: :func:`top_tags` of :func:`pool_scores`."""
    return top_tags(pool_scores(scores, members, how=how), n=n)


def rank_by_tag(ids: np.ndarray, scores: np.ndarray, class_index: int, *, k: int | None = None,
                min_score: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose stored tags hold ``class_index``, ranked by its score: (row numbers int64, scores float32).

    ``ids``/``scores`` are the stored tags of all vectors ([rows, N], as from :func:`tags_from_arrow`).
    Higher scores first, ties to the lower row; at most ``k`` rows; ``min_score`` drops weaker ones.
    """
    class_scores = tag_score(ids, scores, class_index)
    keep = ~np.isnan(class_scores)
    if min_score is not None:
        keep &= class_scores >= min_score
    rows = np.flatnonzero(keep)
    order = np.lexsort((rows, -class_scores[rows]))
    rows = rows[order][: None if k is None else max(int(k), 0)]
    return rows.astype(np.int64), class_scores[rows].astype(np.float32)


def tag_score(ids: np.ndarray, scores: np.ndarray, class_index: int) -> np.ndarray:
    """Each row's stored score for ``class_index`` (float32 [rows]); NaN where the class is not among its tags."""
    ids, scores = _check_stored(ids, scores)
    hit = ids == int(class_index)
    out = np.full(ids.shape[0], np.nan, dtype=np.float32)
    rows, cols = np.nonzero(hit)
    out[rows] = scores[rows, cols]
    return out


def has_tag(ids: np.ndarray, scores: np.ndarray, class_index: int, *, min_score: float = 0.0) -> np.ndarray:
    """Boolean [rows]: the class is among the row's stored tags with a score of at least ``min_score``."""
    s = tag_score(ids, scores, class_index)
    return ~np.isnan(s) & (s >= min_score)


def describes_padding(name: str) -> bool:
    """True for a class that only describes padding (:data:`PADDING_TAGS`, any letter case)."""
    return str(name).strip().casefold() in PADDING_TAGS


def shared_tags(query: Iterable[Tag], hit: Iterable[Tag]) -> list[SharedTag]:
    """The classes in both tag lists ("why similar"), ranked by the smaller of the two scores, then by name.

    Classes that only describe padding (:data:`PADDING_TAGS`, e.g. AudioSet's "Silence") are never
    a reason two clips are alike, and are left out.
    """
    theirs = {t.index: t for t in hit}
    out = [SharedTag(t.name, t.index, t.score, theirs[t.index].score) for t in query
           if t.index in theirs and not describes_padding(t.name)]
    return sorted(out, key=lambda s: (-min(s.query_score, s.hit_score), s.name))


def tag_counts(ids: np.ndarray, scores: np.ndarray, names: Sequence[str], *,
               min_score: float = COUNT_MIN_SCORE) -> list[tuple[str, int]]:
    """Per class, the number of vectors holding it among their stored tags with score >= ``min_score``.

    Classes that no vector holds are left out; most frequent first, ties by name.
    """
    ids, scores = _check_stored(ids, scores)
    valid = (ids >= 0) & (ids < len(names)) & ~np.isnan(scores) & (scores >= min_score)
    counts = np.bincount(ids[valid].astype(np.int64), minlength=len(names))
    return sorted(((names[i], int(c)) for i, c in enumerate(counts) if c > 0), key=lambda t: (-t[1], t[0]))


def _check_stored(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids)
    scores = np.asarray(scores, dtype=np.float32)
    if ids.ndim != 2 or ids.shape != scores.shape:
        raise TagDataError(f"stored tags must be two [rows, N] arrays of one shape, got {ids.shape} and {scores.shape}")
    return ids, scores


# --------------------------------------------------------------------------- storage (the ``tags`` column)
def tags_arrow_type():
    """``list<struct<class: int16, score: float32>>``, the type of the ``tags`` column."""
    import pyarrow as pa

    return pa.list_(pa.struct([("class", pa.int16()), ("score", pa.float32())]))


def tags_to_arrow(ids: np.ndarray, scores: np.ndarray):
    """The ``tags`` column for stored tags [rows, N]; entries with class -1 (padding) are left out."""
    import pyarrow as pa

    ids, scores = _check_stored(ids, scores)
    keep = ids >= 0
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    values = pa.StructArray.from_arrays(
        [pa.array(ids[keep].astype(np.int16)), pa.array(scores[keep].astype(np.float32))], names=["class", "score"])
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=tags_arrow_type())


def tags_from_arrow(column, *, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stored tags [rows, n] from a ``tags`` column (Array or ChunkedArray); missing entries: class -1, score NaN.

    ``n`` defaults to the longest row (at least 1). A null row, e.g. written before the embedder had
    a head, reads as no tags.
    """
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], type=tags_arrow_type())
    offsets = np.asarray(column.offsets, dtype=np.int64)  # absolute positions in column.values
    lengths = np.diff(offsets)
    if column.null_count:
        lengths[np.asarray(column.is_null())] = 0
    width = int(n) if n is not None else max(1, int(lengths.max()) if lengths.size else 1)
    taken = np.minimum(lengths, width)
    rows = np.repeat(np.arange(len(column)), taken)
    within = np.arange(rows.size) - np.repeat(np.cumsum(taken) - taken, taken)
    source = offsets[:-1][rows] + within
    values = column.values
    cls = np.asarray(values.field("class").to_numpy(zero_copy_only=False))
    sc = np.asarray(values.field("score").to_numpy(zero_copy_only=False), dtype=np.float32)
    ids = np.full((len(column), width), NO_TAG, dtype=np.int16)
    scores = np.full((len(column), width), np.nan, dtype=np.float32)
    ids[rows, within] = cls[source]
    scores[rows, within] = sc[source]
    return ids, scores
