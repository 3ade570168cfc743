"""Locate an excerpt that went through what audio goes through: the query side of ``Searcher.locate``.

1. **Too short** -- an excerpt shorter than one analysis window of the embedder has no frame of its
   own: :class:`ExcerptTooShortError`, never a location "found" from padding.
2. **Silence-aware segments** -- the excerpt is cut into the collection's segments; frames that are
   digital silence (the collection's pooling leaves them out, as ingest did) and frames that hold
   only the excerpt's noise floor (:func:`audiosim.engine.search.locate.quiet_frames`) are left
   out, and a segment with no frame left does not vote.
3. **Sub-hop shifts** -- the excerpt is cut ``SHIFTS`` times, starting ``i * hop / SHIFTS`` seconds
   in; every segment of every shift searches the index (``top_m`` matches) and votes on the offset.
4. **Checked on the audio** -- the :data:`CHECK_PLACES` best-voted places over all files
   (:func:`audiosim.engine.search.locate.vote_places`; a vote weighs 1 / its rank among its
   segment's matches) are checked on the recordings' audio
   (:func:`audiosim.engine.search.refine.check_place`): the excerpt's print (only its cells well
   above its own noise floor, band-centred; :mod:`audiosim.engine.search.excerpt_print`) is slid
   over the recording within :data:`SEARCH_HOPS` hops of the vote; the best lag gives the place's
   offset (to 16 ms) and its correlation.
5. **Scan when nothing checks out** -- unless a checked place correlates at least :data:`ACCEPT`,
   the recordings themselves are scanned with the print (:mod:`audiosim.engine.search.excerpt_scan`;
   the best-voted files first, then the others the filters allow, at most ``scan_limit_s``
   seconds of audio), and the best :data:`SCAN_CHECKS` peaks are checked as in 4. A loud noise
   floor over quiet sounds can move every segment vector away from the true place (on ESC-50 at
   -45 dBFS, 5 % of excerpts have no right place among the 20 best-voted); the print still finds it.
6. **The answer** -- the best-correlating place; one :class:`~audiosim.engine.search.locate.Location`
   per file (its best place), ranked by correlation, then the files only the votes name
   (confidence 0). ``verified`` is the correlation, ``scanned`` says the scan found the place.
   ``confidence`` is the margin of the place's correlation over the best *other* checked place's
   (another file, or the same file more than :data:`SEPARATION_HOPS` hops away), full at
   :data:`FULL_MARGIN`: two places that hold the excerpt equally well score about 0.
   ``votes`` / ``agreement`` count the query segments whose votes fall within 1.5 hops of the
   place; ``mean_score`` / ``best_score`` are the query segments' scores against the stored
   segments they meet at the place. When no place can be checked (recordings moved or changed,
   an excerpt with no sound above its floor, ``refine=False``) the votes' locations stand
   (:func:`audiosim.engine.search.locate.vote_offsets`, ``verified`` None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiosim.engine.ingest.segments import segments_with_frames
from audiosim.engine.search.excerpt_print import FINE, Template, log_mel_print
from audiosim.engine.search.excerpt_scan import phase_templates, scan_recordings
from audiosim.engine.search.locate import Location, Vote, quiet_frames, vote_offsets, vote_places
from audiosim.engine.search.refine import check_place
from audiosim.errors import ExcerptTooShortError, SilentAudioError
from audiosim.indexes.vectors import Metric, l2_normalize

SHIFTS = 4
CHECK_PLACES = 6  # best-voted places checked on the audio
SEARCH_HOPS = 2.5  # a voted place is checked this many hops either side (its votes spread over 3 bins)
ACCEPT = 0.8  # a checked place correlating this well is taken without a scan (ESC-50 excerpts under noise up to
# -30 dBFS, codecs, gain: true places 0.90+; other voted places up to 0.75)
SCAN_LIMIT_S = 4 * 3600.0  # seconds of recordings scanned per query when no voted place checks out
SCAN_CHECKS = 4  # best scan peaks checked at fine resolution
SCAN_SEARCH_S = 0.25  # ... this far either side (the scan's frames are 64 ms)
SEPARATION_HOPS = 3  # places of one file closer than this are one place
FULL_MARGIN = 0.5  # a place correlating this much better than any other has confidence 1


@dataclass(frozen=True)
class Checked:
    """A place checked on the audio."""

    path: str
    offset_s: float
    correlation: float
    scanned: bool


def excerpt_segments(searcher, wave: np.ndarray, *, shifts: int = SHIFTS) -> tuple[np.ndarray, np.ndarray]:
    """(query offsets [n], pooled vectors [n, D] in stored space) of every shift's voting segments."""
    coll, emb = searcher.collection, searcher.embedder
    info, sr = emb.info, emb.info.sample_rate
    hop = coll.segment_hop_s or coll.segment_s
    offsets, vectors = [], []
    for i in range(max(int(shifts), 1)):
        s = i * hop / max(int(shifts), 1)
        part = wave[int(round(s * sr)):]
        if part.size < info.window_s * sr:
            continue
        with searcher._embed_lock:
            frames, times = emb.embed_frames(part)
        frames, times = np.asarray(frames), np.asarray(times, dtype=np.float64)
        quiet = quiet_frames(part, times, window_s=info.window_s, sample_rate=sr)
        seg_off, _, members = segments_with_frames(times, part.size / sr, segment_s=coll.segment_s, hop_s=coll.segment_hop_s)
        for o, m in zip(seg_off, members):
            keep = searcher.pooler.keep(frames, m)
            keep = keep[~quiet[keep]]
            if keep.size:
                offsets.append(s + float(o))
                vectors.append(searcher.pooler.spec(frames[keep]))
    if not vectors:
        raise SilentAudioError("the excerpt holds no sound above its own noise floor (silence or a steady floor "
                               "throughout); give an excerpt with sound in it")
    return np.asarray(offsets), np.stack(vectors).astype(np.float32)


def locate_excerpt(searcher, state, wave: np.ndarray, *, filters, top_m: int, max_files: int | None,
                   refine: bool = True, scan_limit_s: float = SCAN_LIMIT_S):
    """Locations of ``wave`` (at the embedder's rate) in the collection's recordings, best first."""
    coll, info = searcher.collection, searcher.embedder.info
    sr = info.sample_rate
    if wave.size < info.window_s * sr:
        raise ExcerptTooShortError(
            f"the excerpt is {wave.size / sr:.3f} s long, shorter than one {info.window_s:g} s analysis window of "
            f"{info.name}; give an excerpt of at least {info.window_s:g} s (several segments of "
            f"{coll.segment_s:g} s locate reliably)")
    hop = coll.segment_hop_s or coll.segment_s
    duration = wave.size / sr
    offsets, vectors = excerpt_segments(searcher, wave)
    Q = state.index.transform(vectors)
    hits = searcher._search_index(state, Q, [None] * len(vectors), int(top_m), filters)
    q = np.array([i for i, row in enumerate(hits) for _ in row], dtype=np.int64)
    flat = [h for row in hits for h in row]
    paths = [h.path for h in flat]
    match = np.array([h.offset_s for h in flat], dtype=np.float64)
    score = np.array([h.score for h in flat], dtype=np.float64)
    locs = vote_offsets(q, paths, match, score, offsets, hop_s=hop, metric=coll.metric, query_duration_s=duration,
                        max_files=max_files)
    if not refine or not locs:
        return locs
    template = Template.of(log_mel_print(wave, sr, FINE))
    if not template.usable:
        return locs
    checked = []
    for place in vote_places(q, paths, match, score, offsets, hop_s=hop, metric=coll.metric, max_places=CHECK_PLACES):
        r = check_place(template, place.path, place.offset_s, duration_s=duration, search_s=SEARCH_HOPS * hop,
                        sample_rate=sr)
        if r is not None:
            checked.append(Checked(place.path, r.offset_s, r.correlation, scanned=False))
    if max((c.correlation for c in checked), default=-1.0) < ACCEPT and scan_limit_s > 0:
        checked += _scan(searcher, state, wave, template, filters, [loc.path for loc in locs],
                         scan_limit_s=scan_limit_s, min_gap_s=SEPARATION_HOPS * hop)
    if not checked:
        return locs
    return _answer(_distinct(checked, SEPARATION_HOPS * hop), locs, state, Q, offsets, q, paths, match, score,
                   hop=hop, metric=coll.metric, duration=duration, max_files=max_files)


def _scan(searcher, state, wave, template: Template, filters, voted: list[str], *, scan_limit_s: float,
          min_gap_s: float) -> list[Checked]:
    """Scan the recordings (voted files first, then the rest the filters allow, within ``scan_limit_s``)."""
    sr = searcher.embedder.info.sample_rate
    items = state.items
    mask = searcher._cached_mask(state, filters, None)
    codes = items.path_code if mask is None else items.path_code[mask]
    length = np.zeros(len(items.paths))
    np.maximum.at(length, items.path_code, items.offset_s + items.duration_s)
    allowed = {items.paths[c]: float(length[c]) for c in np.unique(codes)}
    order = list(dict.fromkeys([p for p in voted if p in allowed] + list(allowed)))
    files, total = [], 0.0
    for p in order:
        total += allowed[p]
        if files and total > scan_limit_s:
            break
        files.append(p)
    out = []
    for pk in scan_recordings(phase_templates(wave, sr), files, sample_rate=sr, min_gap_s=min_gap_s)[:SCAN_CHECKS]:
        r = check_place(template, pk.path, pk.offset_s, duration_s=wave.size / sr, search_s=SCAN_SEARCH_S,
                        sample_rate=sr)
        if r is not None:
            out.append(Checked(pk.path, r.offset_s, r.correlation, scanned=True))
    return out


def _distinct(checked: list[Checked], gap_s: float) -> list[Checked]:
    """Best first, one per place: a place of a file within ``gap_s`` of a better one is the same place."""
    out: list[Checked] = []
    for c in sorted(checked, key=lambda c: -c.correlation):
        if not any(o.path == c.path and abs(o.offset_s - c.offset_s) <= gap_s for o in out):
            out.append(c)
    return out


def _answer(checked: list[Checked], locs: list[Location], state, Q: np.ndarray, offsets: np.ndarray, q, paths,
            match, score, *, hop: float, metric, duration: float, max_files: int | None) -> list[Location]:
    """One Location per file from the distinct checked places (best per file), then the files only voted for."""
    n_q = int(offsets.size)
    best_per_file: dict[str, int] = {}
    for i, c in enumerate(checked):
        best_per_file.setdefault(c.path, i)
    out = []
    for i in sorted(best_per_file.values()):
        c = checked[i]
        other = max((o.correlation for j, o in enumerate(checked) if j != i), default=0.0)
        support = _support_at(c, q, paths, match, offsets, hop, metric, score)
        mean_s, best_s = _place_scores(state, Q, offsets, c, hop, metric)
        out.append(Location(rank=len(out) + 1, path=c.path, offset_s=c.offset_s, end_s=c.offset_s + duration,
                            votes=len(support), n_segments=n_q,
                            confidence=_margin(c.correlation, other),
                            mean_score=mean_s, best_score=best_s, support=support,
                            agreement=len(support) / max(n_q, 1), refined=True, verified=c.correlation,
                            scanned=c.scanned))
    for loc in locs:
        if loc.path not in best_per_file:  # voted for, not checked (or unreadable): another place checked better
            out.append(Location(rank=len(out) + 1, path=loc.path, offset_s=loc.offset_s, end_s=loc.end_s,
                                votes=loc.votes, n_segments=loc.n_segments, confidence=0.0, mean_score=loc.mean_score,
                                best_score=loc.best_score, support=loc.support, agreement=loc.agreement))
    return out[:max_files] if max_files else out


def _margin(v: float, other: float) -> float:
    """The confidence of a place correlating ``v`` when the best other place correlates ``other``: the margin
    over ``other`` (at least 0), full at :data:`FULL_MARGIN`."""
    return float(min(max(v - max(other, 0.0), 0.0) / FULL_MARGIN, 1.0))


def _support_at(c: Checked, q, paths, match, offsets, hop: float, metric, score) -> tuple[Vote, ...]:
    """Each query segment's best vote in ``c``'s file within 1.5 hops of its offset."""
    sign = 1.0 if Metric.parse(metric).higher_is_closer else -1.0
    best: dict[int, int] = {}
    for j, p in enumerate(paths):
        if p == c.path and abs(match[j] - offsets[q[j]] - c.offset_s) <= 1.5 * hop:
            if q[j] not in best or sign * score[j] > sign * score[best[q[j]]]:
                best[int(q[j])] = j
    return tuple(Vote(float(offsets[qq]), float(match[j]), float(score[j])) for qq, j in sorted(best.items()))


def _place_scores(state, Q: np.ndarray, offsets: np.ndarray, c: Checked, hop: float, metric) -> tuple[float, float]:
    """(mean, best) score of the query segments (``Q``, index space) against the stored segments they meet at ``c``
    (the nearest stored start within half a hop); (0, 0) when none is stored there."""
    items = state.items
    code = {p: i for i, p in enumerate(items.paths)}.get(c.path, -1)
    rows = np.flatnonzero(items.path_code == code)
    if rows.size == 0:
        return 0.0, 0.0
    want = c.offset_s + offsets
    gap = np.abs(items.offset_s[rows][None, :] - want[:, None])
    nearest = gap.argmin(axis=1)
    near = gap[np.arange(want.size), nearest] <= hop / 2
    if not near.any():
        return 0.0, 0.0
    X = state.index.fetch(items.ids[rows[nearest[near]]]).astype(np.float64)
    qv = np.asarray(Q[near], dtype=np.float64)
    m = Metric.parse(metric)
    if m is Metric.COSINE:
        s = np.einsum("ij,ij->i", l2_normalize(X, dtype=np.float64), l2_normalize(qv, dtype=np.float64))
        return float(s.mean()), float(s.max())
    s = np.linalg.norm(X - qv, axis=1)
    return float(s.mean()), float(s.min())
