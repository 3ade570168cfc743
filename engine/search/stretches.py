"""Duplicated stretches in a segment collection: a run of one file's segments that another file (or itself, elsewhere) holds.

A segment collection stores one vector per ``segment_s`` window every ``hop_s`` of each recording.
:func:`find_stretches`:

1. **Candidates**: the neighbour graph of all segment vectors (``neighbours``: FAISS or the torch
   search) gives pairs of segments at or above ``candidate_threshold``; pairs of one file whose
   windows overlap (they share audio by construction) are dropped, and each segment keeps its
   ``candidate_rank`` most similar partners.
2. **Runs**: a pair is (file A, offset a, file B, offset b) with A before B (or a before b in one
   file); pairs of the same two files whose offsets a and the lags b - a each differ by at most
   one hop join into one run: a diagonal of the two recordings' similarity matrix, i.e. a stretch
   of A found again in B. A run spans its first segment's start to its last segment's end.
3. **Verification** (``verify=True``): each run's two spans, widened by one hop at either side,
   are decoded and compared by :func:`audiosim.engine.search.content_match.match_stretch` (offset
   searched around the run's lag); the stretch is the longest agreeing part, with ends to about
   0.1 s, at least :data:`MIN_STRETCH_S` of sound, scoring at least ``threshold``. Runs that land
   on the same stretch are merged (their spans joined, the score weighted by length).
   A run whose file cannot be read is judged by its vectors, as with ``verify=False``: a run of at
   least :data:`MIN_VECTOR_RUN` segments whose mean cosine reaches ``threshold``; its spans are the
   segments' (``basis="vector"``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from audiosim.engine.search.content_match import match_stretch, print_basis, read_print
from audiosim.errors import AudiosimError
from audiosim.indexes.graph import Pairs, components

MIN_STRETCH_S = 1.0  # a verified stretch holds at least this much sound (or one segment, if segments are shorter)
MIN_VECTOR_RUN = 2  # judged by vectors alone, a stretch is at least this many consecutive segments
MERGE_OFFSET_S = 0.05  # verified stretches of two files whose offsets differ by less are one stretch when they overlap


@dataclass(frozen=True)
class Stretch:
    """``a_pos``/``b_pos``: the item positions of the run's first segment in each file (their ids name the member)."""

    a_pos: int
    b_pos: int
    a_start_s: float
    a_end_s: float
    b_start_s: float
    b_end_s: float
    score: float
    basis: str  # "content" (verified) or "vector"


@dataclass(frozen=True)
class StretchSearch:
    stretches: tuple[Stretch, ...]
    candidate_pairs: int
    runs: int
    verified_runs: int  # runs compared by their audio
    unreadable: dict[str, str]  # path -> why it could not be decoded
    device: str


@dataclass(frozen=True)
class _Run:
    fa: int
    fb: int
    a_pos: int
    b_pos: int
    a0: float
    a1: float
    b0: float
    b1: float
    lag: float
    cosine: float
    segments: int


def _runs(items, pairs: Pairs, *, segment_s: float, hop_s: float, rank: int) -> list[_Run]:
    """Candidate pairs of segments joined into diagonal runs (see the module docstring)."""
    fp, fq = items.path_code[pairs.i].astype(np.int64), items.path_code[pairs.j].astype(np.int64)
    op, oq = items.offset_s[pairs.i], items.offset_s[pairs.j]
    swap = (fp > fq) | ((fp == fq) & (op > oq))
    pa, pb = np.where(swap, pairs.j, pairs.i), np.where(swap, pairs.i, pairs.j)
    fa, fb = np.where(swap, fq, fp), np.where(swap, fp, fq)
    oa, ob = np.where(swap, oq, op), np.where(swap, op, oq)
    keep = (fa != fb) | (ob - oa >= segment_s - 1e-6)  # one file's overlapping windows share audio: no finding
    sim = pairs.similarity
    pa, pb, fa, fb, oa, ob, sim = (x[keep] for x in (pa, pb, fa, fb, oa, ob, sim))
    if pa.size == 0:
        return []
    order = np.argsort(-sim, kind="stable")  # each segment keeps its `rank` most similar partners
    seen = np.zeros(len(items), np.int64)
    chosen = []
    for m in order:
        if seen[pa[m]] < rank or seen[pb[m]] < rank:
            chosen.append(m)
        seen[pa[m]] += 1
        seen[pb[m]] += 1
    sel = np.array(sorted(chosen), np.int64)
    pa, pb, fa, fb, oa, ob, sim = (x[sel] for x in (pa, pb, fa, fb, oa, ob, sim))
    lag = ob - oa
    abin, lbin = np.rint(oa / hop_s).astype(np.int64), np.rint(lag / hop_s).astype(np.int64)
    where = {(int(x), int(y), int(a), int(lb)): m for m, (x, y, a, lb) in enumerate(zip(fa, fb, abin, lbin))}
    ei, ej = [], []
    for m, (x, y, a, lb) in enumerate(zip(fa, fb, abin, lbin)):
        for da in (0, 1):  # the next segment along A (or the same one), the lag within one hop
            for dl in (-1, 0, 1):
                other = where.get((int(x), int(y), int(a) + da, int(lb) + dl))
                if other is not None and other != m:
                    ei.append(m)
                    ej.append(other)
    groups = components(pa.size, np.array(ei, np.int64), np.array(ej, np.int64))
    grouped = np.zeros(pa.size, bool)
    for g in groups:
        grouped[g] = True
    groups += [np.array([m]) for m in np.flatnonzero(~grouped)]
    out = []
    for g in groups:
        first_a, first_b = g[np.argmin(oa[g])], g[np.argmin(ob[g])]
        out.append(_Run(fa=int(fa[g[0]]), fb=int(fb[g[0]]), a_pos=int(pa[first_a]), b_pos=int(pb[first_b]),
                        a0=float(oa[g].min()), a1=float(oa[g].max() + segment_s), b0=float(ob[g].min()),
                        b1=float(ob[g].max() + segment_s), lag=float(np.median(lag[g])), cosine=float(sim[g].mean()),
                        segments=int(np.unique(abin[g]).size)))
    return out


def _merge(found: list[Stretch], items) -> list[Stretch]:
    """Verified stretches of the same two files and offset that overlap are one (spans joined, score length-weighted)."""
    found = sorted(found, key=lambda s: (int(items.path_code[s.a_pos]), int(items.path_code[s.b_pos]), s.a_start_s))
    out: list[Stretch] = []
    for s in found:
        last = out[-1] if out else None
        if (last is not None and last.basis == s.basis == "content"
                and items.path_code[last.a_pos] == items.path_code[s.a_pos]
                and items.path_code[last.b_pos] == items.path_code[s.b_pos]
                and abs((last.b_start_s - last.a_start_s) - (s.b_start_s - s.a_start_s)) < MERGE_OFFSET_S
                and s.a_start_s <= last.a_end_s):
            la, sa = last.a_end_s - last.a_start_s, s.a_end_s - s.a_start_s
            out[-1] = Stretch(a_pos=last.a_pos, b_pos=last.b_pos, a_start_s=last.a_start_s, a_end_s=max(last.a_end_s, s.a_end_s),
                              b_start_s=min(last.b_start_s, s.b_start_s), b_end_s=max(last.b_end_s, s.b_end_s),
                              score=(last.score * la + s.score * sa) / max(la + sa, 1e-9), basis="content")
        else:
            out.append(s)
    return out


def _by_vectors(r: _Run, threshold: float) -> Stretch | None:
    """A run judged by its vectors: at least MIN_VECTOR_RUN segments whose mean cosine reaches ``threshold``."""
    if r.segments >= MIN_VECTOR_RUN and r.cosine >= threshold:
        return Stretch(a_pos=r.a_pos, b_pos=r.b_pos, a_start_s=r.a0, a_end_s=r.a1, b_start_s=r.b0, b_end_s=r.b1,
                       score=r.cosine, basis="vector")
    return None


def find_stretches(items, V: np.ndarray, *, segment_s: float, hop_s: float, threshold: float, verify: bool,
                   neighbours: Callable[..., Pairs], k: int, candidate_threshold: float,
                   candidate_rank: int) -> StretchSearch:
    """The duplicated stretches of a segment collection (see the module docstring); ``V[p]``: item p's vector."""
    hop_s = float(hop_s or segment_s)
    per = int(np.ceil(segment_s / hop_s))
    floor = min(float(candidate_threshold), float(threshold)) if verify else float(threshold)
    pairs = neighbours(V, threshold=floor, k=int(k) + 2 * per, mutual=None)
    runs = _runs(items, pairs, segment_s=float(segment_s), hop_s=hop_s, rank=int(candidate_rank))
    basis = print_basis() if verify and runs else None
    min_s = min(MIN_STRETCH_S, float(segment_s))

    def check(r: _Run) -> tuple[Stretch | None, dict[str, str]]:
        """The run's verified stretch (None: not one), or, when a file cannot be read, its vector verdict."""
        pa, pb = items.paths[r.fa], items.paths[r.fb]
        sa, sb = max(r.a0 - hop_s, 0.0), max(r.b0 - hop_s, 0.0)
        prints, lost = [], {}
        for path, s0, s1 in ((pa, sa, r.a1 + hop_s), (pb, sb, r.b1 + hop_s)):
            try:
                prints.append(read_print(path, start_s=s0, end_s=s1, basis=basis))
            except (AudiosimError, OSError) as e:
                lost[path] = str(e)
        if lost:
            return _by_vectors(r, threshold), lost
        reach = hop_s + 0.1 if r.fa != r.fb else min(hop_s + 0.1, r.lag - 0.5 * segment_s)  # never onto itself
        m = match_stretch(prints[0], prints[1], threshold=float(threshold), min_s=min_s, max_offset_s=reach,
                          centre_s=sa + r.lag - sb)
        if m is None:
            return None, {}
        return Stretch(a_pos=r.a_pos, b_pos=r.b_pos, a_start_s=sa + m.a_start_s, a_end_s=sa + m.a_end_s,
                       b_start_s=sb + m.a_start_s + m.offset_s, b_end_s=sb + m.a_end_s + m.offset_s,
                       score=m.score, basis="content"), {}

    found: list[Stretch] = []
    unreadable: dict[str, str] = {}
    verified = 0
    if verify:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for stretch, lost in pool.map(check, runs):
                unreadable.update(lost)
                verified += not lost
                if stretch is not None:
                    found.append(stretch)
    else:
        found = [st for st in (_by_vectors(r, threshold) for r in runs) if st is not None]
    return StretchSearch(stretches=tuple(_merge(found, items)), candidate_pairs=len(pairs), runs=len(runs),
                         verified_runs=verified, unreadable=unreadable, device=pairs.device)
