"""Duplicates in a collection: identical files by sha256, near-duplicates found by vectors and checked by their audio.

1. **Identical** -- files whose stored content sha256 (of the bytes decoded at ingest) is the same
   are one group, found without embedding anything.
2. **Candidates** -- one vector per distinct content (identical files share it) enters a neighbour
   graph (:func:`neighbour_pairs`: each vector's ``k`` nearest neighbours by cosine of the stored
   vectors, searched in blocks with FAISS, on the GPU when FAISS has one, else with torch on CUDA
   when torch sees a GPU, else FAISS on the CPU).
3. **Verified** (``verify=True``, the default) -- the graph is only the cheap, recall-oriented
   candidate generator: pairs with cosine >= :data:`CANDIDATE_THRESHOLD` where either end is among
   the other's :data:`CANDIDATE_RANK` nearest. Each candidate pair is decided by its audio:
   :mod:`audiosim.engine.search.verify` decodes both files and
   :func:`audiosim.engine.search.content_match.match` aligns them (offset within +-0.6 s) and scores
   the fraction of their level-normalised log-mel cells (0-4 kHz at 8 kHz, the band every copy
   keeps; digital silence left out) that agree within 5 dB. A pair scoring at least ``threshold``
   is a near-duplicate (``basis="content"``). Gain, re-encoding, resampling and trims leave the
   score near 1; distinct clips of one kind of sound (two rain recordings) and different cuts of
   one source recording score far lower (docs/dedup.md has the measured distributions).
   A pair whose files cannot be read (moved, deleted, damaged; any file of the same content will
   do) or that shares less than 0.1 s of sound is judged by its vectors as ``verify=False`` judges
   it (``basis="vector"``), and the report counts those pairs and names the unreadable files.
4. **Vector only** (``verify=False``) -- a pair is an edge when its cosine reaches ``threshold``
   **and** the two are each other's ``mutual`` nearest neighbours (default 1; ``None``: any pair
   above the threshold). Without the mutual test similar but distinct sounds chain into big groups.

Each connected component of two or more contents is a group listing every file of those contents.
:data:`DEFAULT_THRESHOLD` 0.95 is both the content score (verified; at most 5 % of the cells
disagree) and the cosine (vector only) at which ``scripts/bench_dedup.py`` was measured; see
docs/dedup.md.

**Segment collections** (indexed with ``--segment``) hold stretches of recordings, not files:
there the report lists duplicated stretches (:mod:`audiosim.engine.search.stretches`): a run of
consecutive segments of one file that another file (or the same file, elsewhere) holds too, as
groups of kind ``stretch`` with two members, each with its ``offset_s`` .. ``end_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import numpy as np

from audiosim.engine.search.neighbours_torch import cuda_present, similar_pairs_torch
from audiosim.engine.search.stretches import find_stretches
from audiosim.engine.search.verify import DEFAULT_BUDGET_BYTES, check_pairs
from audiosim.errors import InvalidOptionError
from audiosim.indexes.graph import DEFAULT_K, Pairs, check_options, components, faiss_has_gpu, similar_pairs

DEFAULT_THRESHOLD = 0.95
DEFAULT_MUTUAL = 1  # vector-only: a near pair must be each other's nearest neighbour (measured: precision 0.14 -> 0.90)
CANDIDATE_THRESHOLD = 0.75  # verified: cosine at or above which a pair is checked by its audio
CANDIDATE_RANK = 5  # verified: ... when either end is among the other's this many nearest
MAX_UNREADABLE_LISTED = 20  # unreadable files named in the report (all are counted)


class Kind(str, Enum):
    IDENTICAL = "identical"
    NEAR = "near"
    STRETCH = "stretch"


class Basis(str, Enum):
    """What decided that a member belongs to its group."""

    SHA256 = "sha256"  # identical stored content hash
    CONTENT = "content"  # the two files' audio compared (the verified score)
    VECTOR = "vector"  # the stored vectors' cosine (verify=False, or the audio could not be compared)


IDENTICAL, NEAR, STRETCH = Kind.IDENTICAL.value, Kind.NEAR.value, Kind.STRETCH.value


@dataclass(frozen=True)
class Member:
    id: int
    path: str
    label: str | None
    similarity: float  # best score to another member of its group (1.0 for identical content)
    basis: str = Basis.SHA256.value
    offset_s: float | None = None  # stretches: where in the file
    end_s: float | None = None

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        if self.offset_s is None:
            del d["offset_s"], d["end_s"]
        return d


@dataclass(frozen=True)
class DuplicateGroup:
    kind: str  # Kind: identical, near or stretch
    members: tuple[Member, ...]
    min_similarity: float  # the weakest edge that joined the group

    def to_dict(self) -> dict:
        return {"kind": self.kind, "size": len(self.members), "min_similarity": self.min_similarity,
                "members": [m.to_dict() for m in self.members]}


@dataclass(frozen=True)
class Verification:
    """What the verified run did: pairs checked by their audio, pairs left to the vectors, unreadable files."""

    candidate_pairs: int
    compared_pairs: int  # scored by their audio
    content_pairs: int  # of those, at or above the threshold
    vector_pairs: int  # judged by their vectors (a file unreadable, or too little sound in common)
    unreadable_files: int
    unreadable: tuple[str, ...]  # the first MAX_UNREADABLE_LISTED decoder messages (each names its file)
    seconds: float

    def to_dict(self) -> dict:
        return {"candidate_pairs": self.candidate_pairs, "compared_pairs": self.compared_pairs,
                "content_pairs": self.content_pairs, "vector_pairs": self.vector_pairs,
                "unreadable_files": self.unreadable_files, "unreadable": list(self.unreadable),
                "verify_seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class DuplicateReport:
    groups: tuple[DuplicateGroup, ...]
    threshold: float
    files: int
    seconds: float
    device: str
    verify: bool = False
    verification: Verification | None = None  # verified runs: what the verification did

    def to_dict(self) -> dict:
        out = {"threshold": self.threshold, "files": self.files, "groups": len(self.groups),
               "identical_groups": sum(g.kind == IDENTICAL for g in self.groups),
               "near_groups": sum(g.kind == NEAR for g in self.groups), "seconds": round(self.seconds, 3),
               "device": self.device, "verify": self.verify}
        if any(g.kind == STRETCH for g in self.groups):
            out["stretch_groups"] = sum(g.kind == STRETCH for g in self.groups)
        if self.verification is not None:
            out.update(self.verification.to_dict())
        out["duplicates"] = [g.to_dict() for g in self.groups]
        return out


def resolve_device(device: str) -> str:
    """``"faiss"`` (FAISS: CPU, or its GPU build's GPU) or ``"torch"`` (torch on CUDA) for ``device``."""
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidOptionError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu" or faiss_has_gpu():
        return "faiss"
    if device == "cuda" or cuda_present():  # cuda without a FAISS GPU build: torch (it says so when it has no GPU)
        return "torch"
    return "faiss"


def neighbour_pairs(X: np.ndarray, *, threshold: float, k: int = DEFAULT_K, device: str = "auto",
                    mutual: int | None = None) -> Pairs:
    """The neighbour graph's pairs (:func:`audiosim.indexes.graph.similar_pairs`), searched where ``device`` says."""
    if resolve_device(device) == "torch":
        return similar_pairs_torch(X, threshold=threshold, k=k, device="cuda", mutual=mutual)
    return similar_pairs(X, threshold=threshold, k=k, device=device, mutual=mutual)


def _check(threshold: float, k: int, mutual: int | None, candidate_threshold: float, candidate_rank: int) -> None:
    if not np.isfinite(float(threshold)) or not (-1.0 <= float(threshold) <= 1.0):
        raise InvalidOptionError(f"--threshold is a similarity in [-1, 1], got {threshold}")
    if not (-1.0 <= float(candidate_threshold) <= 1.0):
        raise InvalidOptionError(f"candidate_threshold is a cosine in [-1, 1], got {candidate_threshold}")
    if int(candidate_rank) < 1:
        raise InvalidOptionError(f"candidate_rank must be at least 1, got {candidate_rank}")
    check_options(k=int(k), mutual=mutual)


def find_duplicates(collection, *, threshold: float = DEFAULT_THRESHOLD, k: int = DEFAULT_K,
                    device: str = "auto", mutual: int | None = DEFAULT_MUTUAL, verify: bool = True,
                    candidate_threshold: float = CANDIDATE_THRESHOLD, candidate_rank: int = CANDIDATE_RANK,
                    budget_bytes: int = DEFAULT_BUDGET_BYTES) -> DuplicateReport:
    """Identical and near-duplicate groups of ``collection``'s files (or its duplicated stretches); see the module docstring."""
    t0 = time.perf_counter()
    _check(threshold, k, mutual, candidate_threshold, candidate_rank)
    threshold, verify = float(threshold), bool(verify)
    items = collection.items()
    n = len(items)
    if n < 2:
        return DuplicateReport((), threshold, n, time.perf_counter() - t0, "cpu", verify)
    ids, X = collection.embeddings()
    V = np.empty((n, X.shape[1]), dtype=np.float32)
    V[items.positions(ids)] = X

    def member(pos: int, sim: float, basis: str, start: float | None = None, end: float | None = None) -> Member:
        lc = int(items.label_code[pos])
        return Member(id=int(items.ids[pos]), path=items.paths[int(items.path_code[pos])],
                      label=items.labels[lc] if lc >= 0 else None, similarity=round(float(sim), 6), basis=basis,
                      offset_s=None if start is None else round(float(start), 3),
                      end_s=None if end is None else round(float(end), 3))

    if collection.segment_s:
        return _stretch_report(collection, items, V, member, t0, threshold=threshold, verify=verify, k=k, device=device,
                               candidate_threshold=candidate_threshold, candidate_rank=candidate_rank)
    shas = list(items.content_sha256) if items.content_sha256 else [f"row{i}" for i in range(n)]
    by_sha: dict[str, list[int]] = {}
    for pos, sha in enumerate(shas):
        by_sha.setdefault(sha, []).append(pos)
    groups = [DuplicateGroup(IDENTICAL, tuple(member(p, 1.0, Basis.SHA256.value) for p in rows), 1.0)
              for rows in by_sha.values() if len(rows) >= 2]
    contents = list(by_sha.values())
    reps = np.array([rows[0] for rows in contents], dtype=np.int64)  # one vector per distinct content
    graph_k = max(int(k), int(mutual or 1), int(candidate_rank) if verify else 1)
    floor = min(threshold, float(candidate_threshold)) if verify else threshold
    pairs = neighbour_pairs(V[reps], threshold=floor, k=graph_k, device=device, mutual=None if verify else mutual)
    stats = None
    if verify:
        pairs, score, basis, stats = _verify(pairs, contents, items, threshold=threshold, mutual=mutual,
                                             candidate_threshold=candidate_threshold, candidate_rank=candidate_rank,
                                             budget_bytes=budget_bytes)
    else:
        score, basis = pairs.similarity.astype(np.float64), np.full(len(pairs), Basis.VECTOR.value, dtype=object)
    keep = score >= threshold
    ei, ej, es, eb = pairs.i[keep], pairs.j[keep], score[keep], basis[keep]
    best = np.full(reps.size, -np.inf)
    best_basis = np.full(reps.size, Basis.VECTOR.value, dtype=object)
    for a, b, s, bs in zip(ei, ej, es, eb):
        for end in (a, b):
            if s > best[end]:
                best[end], best_basis[end] = s, bs
    comps = components(reps.size, ei, ej)
    label_of = np.full(reps.size, -1)
    for c, members in enumerate(comps):
        label_of[members] = c
    weakest: dict[int, float] = {}
    for a, s in zip(ei, es):
        weakest[int(label_of[a])] = min(weakest.get(int(label_of[a]), 1.0), float(s))
    for c, members in enumerate(comps):
        rows = [(p, float(best[r]), str(best_basis[r])) for r in members for p in contents[r]]
        rows.sort(key=lambda t: (-t[1], items.paths[int(items.path_code[t[0]])]))
        groups.append(DuplicateGroup(NEAR, tuple(member(p, s, b) for p, s, b in rows), round(weakest.get(c, 1.0), 6)))
    return DuplicateReport(tuple(groups), threshold, n, time.perf_counter() - t0, pairs.device, verify, stats)


def _verify(pairs: Pairs, contents: list[list[int]], items, *, threshold: float, mutual: int | None,
            candidate_threshold: float, candidate_rank: int, budget_bytes: int):
    """(candidate pairs, their scores, their basis, :class:`Verification`) of a verified run."""
    t = time.perf_counter()
    near = ((pairs.rank_ij >= 1) & (pairs.rank_ij <= candidate_rank)) | ((pairs.rank_ji >= 1) & (pairs.rank_ji <= candidate_rank))
    vector_ok = pairs.similarity >= threshold
    if mutual is not None:
        vector_ok &= pairs.mutual(int(mutual))
    cand = (near & (pairs.similarity >= candidate_threshold)) | vector_ok  # the vector rule's pairs are candidates too
    pairs = Pairs(pairs.i[cand], pairs.j[cand], pairs.similarity[cand], pairs.device, pairs.rank_ij[cand], pairs.rank_ji[cand])
    vector_ok = vector_ok[cand]
    sources = [[items.paths[int(items.path_code[p])] for p in rows] for rows in contents]
    checked = check_pairs(sources, pairs.i, pairs.j, budget_bytes=budget_bytes)
    compared = np.isfinite(checked.score)
    score = np.where(compared, checked.score, np.where(vector_ok, pairs.similarity, -np.inf))
    basis = np.where(compared, Basis.CONTENT.value, Basis.VECTOR.value).astype(object)
    unreadable = sorted(p for c in checked.unreadable for p in sources[c])
    reasons = [why for _, why in sorted(checked.unreadable.items())][:MAX_UNREADABLE_LISTED]
    stats = Verification(candidate_pairs=len(pairs), compared_pairs=int(compared.sum()),
                         content_pairs=int((compared & (score >= threshold)).sum()),
                         vector_pairs=int((~compared & (score >= threshold)).sum()), unreadable_files=len(unreadable),
                         unreadable=tuple(reasons), seconds=time.perf_counter() - t)
    return pairs, score, basis, stats


def _stretch_report(collection, items, V, member, t0, *, threshold, verify, k, device, candidate_threshold,
                    candidate_rank) -> DuplicateReport:
    t = time.perf_counter()
    segment_s = float(collection.segment_s)
    found = find_stretches(items, V, segment_s=segment_s, hop_s=float(collection.segment_hop_s or segment_s),
                           threshold=threshold, verify=verify, k=k, candidate_threshold=candidate_threshold,
                           candidate_rank=candidate_rank,
                           neighbours=lambda X, **kw: neighbour_pairs(X, device=device, **kw))
    groups = tuple(DuplicateGroup(STRETCH, (member(s.a_pos, s.score, s.basis, s.a_start_s, s.a_end_s),
                                            member(s.b_pos, s.score, s.basis, s.b_start_s, s.b_end_s)), round(s.score, 6))
                   for s in found.stretches)
    stats = None
    if verify:
        reasons = [why if p in why else f"{p}: {why}" for p, why in sorted(found.unreadable.items())][:MAX_UNREADABLE_LISTED]
        stats = Verification(candidate_pairs=found.candidate_pairs, compared_pairs=found.verified_runs,
                             content_pairs=sum(s.basis == Basis.CONTENT.value for s in found.stretches),
                             vector_pairs=sum(s.basis == Basis.VECTOR.value for s in found.stretches),
                             unreadable_files=len(found.unreadable), unreadable=tuple(reasons),
                             seconds=time.perf_counter() - t)
    return DuplicateReport(groups, threshold, len(set(items.path_code.tolist())), time.perf_counter() - t0, found.device,
                           verify, stats)
