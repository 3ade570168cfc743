"""Duplicates in a collection: identical files by their stored sha256, then near-duplicates from a neighbour graph.

1. **Identical** -- files whose stored content sha256 (of the bytes decoded at ingest) is the same
   are one group, found without embedding anything.
2. **Near** -- one vector per distinct content (identical files share it) enters a neighbour graph
   (:func:`audiosim.indexes.graph.similar_pairs`: each vector's ``k`` nearest neighbours by cosine
   of the stored vectors, searched in blocks, on the GPU when FAISS has one); pairs at or above
   ``threshold`` that are each other's ``mutual`` nearest neighbours (default 1: the nearest) are
   edges, and each connected component of two or more contents is a group, listing every file of
   those contents. Without the mutual test, similar but distinct sounds (rain, wind, engines)
   chain into large groups: on the benchmark below, pair precision 0.14 instead of 0.90 at 0.95.
   ``mutual=None`` keeps every pair above the threshold; a larger ``mutual`` groups several
   near-copies of one recording that are not each other's nearest.

:data:`DEFAULT_THRESHOLD` (cosine 0.95 of YAMNet mu vectors) is where ``scripts/bench_dedup.py``
measured the best pair F1 on ESC-50 copies (re-encodes, resampling, trims, gain, light noise):
precision 0.90, recall 0.81; see docs/dedup.md. A collection of one vector per file is needed (segment collections hold stretches,
not files).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from audiosim.errors import CollectionMismatchError, InvalidOptionError
from audiosim.indexes.graph import DEFAULT_K, components, similar_pairs

DEFAULT_THRESHOLD = 0.95
DEFAULT_MUTUAL = 1  # a near pair must be each other's nearest neighbour (measured: precision 0.14 -> 0.90)
IDENTICAL, NEAR = "identical", "near"


@dataclass(frozen=True)
class Member:
    id: int
    path: str
    label: str | None
    similarity: float  # best cosine to another member of its group (1.0 for identical content)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DuplicateGroup:
    kind: str  # IDENTICAL or NEAR
    members: tuple[Member, ...]
    min_similarity: float  # the weakest edge that joined the group

    def to_dict(self) -> dict:
        return {"kind": self.kind, "size": len(self.members), "min_similarity": self.min_similarity,
                "members": [m.to_dict() for m in self.members]}


@dataclass(frozen=True)
class DuplicateReport:
    groups: tuple[DuplicateGroup, ...]
    threshold: float
    files: int
    seconds: float
    device: str

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "files": self.files, "groups": len(self.groups),
                "identical_groups": sum(g.kind == IDENTICAL for g in self.groups),
                "near_groups": sum(g.kind == NEAR for g in self.groups), "seconds": round(self.seconds, 3),
                "device": self.device, "duplicates": [g.to_dict() for g in self.groups]}


def find_duplicates(collection, *, threshold: float = DEFAULT_THRESHOLD, k: int = DEFAULT_K,
                    device: str = "auto", mutual: int | None = DEFAULT_MUTUAL) -> DuplicateReport:
    """Identical and near-duplicate groups of ``collection``'s files; see the module docstring."""
    t0 = time.perf_counter()
    if not (-1.0 <= float(threshold) <= 1.0):
        raise InvalidOptionError(f"--threshold is a cosine similarity in [-1, 1], got {threshold}")
    if int(k) < 1:
        raise CollectionMismatchError(f"k must be at least 1, got {k}")
    if collection.segment_s:
        raise CollectionMismatchError(f"{collection.root} stores segments of recordings; dedup compares one vector per file "
                            "(index the folder into a collection without --segment)")
    items = collection.items()
    n = len(items)
    if n < 2:
        return DuplicateReport((), float(threshold), n, time.perf_counter() - t0, "cpu")
    shas = list(items.content_sha256) if items.content_sha256 else [f"row{i}" for i in range(n)]

    def member(pos: int, sim: float) -> Member:
        lc = int(items.label_code[pos])
        return Member(id=int(items.ids[pos]), path=items.paths[int(items.path_code[pos])],
                      label=items.labels[lc] if lc >= 0 else None, similarity=float(sim))

    by_sha: dict[str, list[int]] = {}
    for pos, sha in enumerate(shas):
        by_sha.setdefault(sha, []).append(pos)
    groups = [DuplicateGroup(IDENTICAL, tuple(member(p, 1.0) for p in rows), 1.0)
              for rows in by_sha.values() if len(rows) >= 2]
    reps = np.array([rows[0] for rows in by_sha.values()], dtype=np.int64)  # one vector per distinct content
    ids, X = collection.embeddings()
    pos_of = items.positions(ids)
    V = np.empty((n, X.shape[1]), dtype=np.float32)
    V[pos_of] = X
    pairs = similar_pairs(V[reps], threshold=float(threshold), k=max(int(k), mutual or 1), device=device, mutual=mutual)
    best = np.zeros(reps.size, dtype=np.float32)
    np.maximum.at(best, pairs.i, pairs.similarity)
    np.maximum.at(best, pairs.j, pairs.similarity)
    weakest = {}
    comps = components(reps.size, pairs.i, pairs.j)
    label_of = np.full(reps.size, -1)
    for c, members in enumerate(comps):
        label_of[members] = c
    for a, b, s in zip(pairs.i, pairs.j, pairs.similarity):
        c = label_of[a]
        weakest[c] = min(weakest.get(c, 1.0), float(s))
    for c, members in enumerate(comps):
        rows = [(p, float(best[r])) for r in members for p in by_sha[shas[reps[r]]]]
        rows.sort(key=lambda t: (-t[1], items.paths[int(items.path_code[t[0]])]))
        groups.append(DuplicateGroup(NEAR, tuple(member(p, s) for p, s in rows), weakest.get(c, 1.0)))
    return DuplicateReport(tuple(groups), float(threshold), n, time.perf_counter() - t0, pairs.device)
