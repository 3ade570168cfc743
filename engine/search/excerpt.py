"""Locate an excerpt that went through what audio goes through: the query side of ``Searcher.locate``.

1. **Too short** -- an excerpt shorter than one analysis window of the embedder has no frame of its
   own: :class:`ExcerptTooShortError`, never a location "found" from padding.
2. **Silence-aware segments** -- the excerpt is cut into the collection's segments; frames that are
   digital silence (the collection's pooling leaves them out, as ingest did) and frames that hold
   only the excerpt's noise floor (:func:`audiosim.engine.search.locate.quiet_frames`: a re-recorded
   excerpt has a floor where the indexed recording has digital silence) are left out, and a
   segment with no frame left does not vote.
3. **Sub-hop shifts** -- the excerpt rarely starts on the collection's segment grid; it is cut
   ``SHIFTS`` times, starting ``i * hop / SHIFTS`` seconds in, and every segment of every shift
   votes together (one voter each) in :func:`audiosim.engine.search.locate.vote_offsets`: the shift
   closest to the grid matches best, and the others still agree on the offset.
4. **Refined offset** -- the best locations' offsets are refined by cross-correlating energy
   envelopes at 10 ms (:mod:`audiosim.engine.search.refine`), within one hop of the vote.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from audiosim.engine.ingest.segments import segments_with_frames
from audiosim.engine.search.locate import quiet_frames, vote_offsets
from audiosim.engine.search.refine import refine_offset
from audiosim.errors import ExcerptTooShortError, SilentAudioError

SHIFTS = 4
REFINE_TOP = 3  # locations whose offset is refined


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
                   refine: bool = True):
    """Locations of ``wave`` (at the embedder's rate) in the collection's recordings, best first."""
    coll, info = searcher.collection, searcher.embedder.info
    sr = info.sample_rate
    if wave.size < info.window_s * sr:
        raise ExcerptTooShortError(
            f"the excerpt is {wave.size / sr:.3f} s long, shorter than one {info.window_s:g} s analysis window of "
            f"{info.name}; give an excerpt of at least {info.window_s:g} s (several segments of "
            f"{coll.segment_s:g} s locate reliably)")
    hop = coll.segment_hop_s or coll.segment_s
    offsets, vectors = excerpt_segments(searcher, wave)
    hits = searcher._search_index(state, state.index.transform(vectors), [None] * len(vectors), int(top_m), filters)
    q = [i for i, row in enumerate(hits) for _ in row]
    flat = [h for row in hits for h in row]
    locs = vote_offsets(np.array(q, dtype=np.int64), [h.path for h in flat],
                        np.array([h.offset_s for h in flat], dtype=np.float64),
                        np.array([h.score for h in flat], dtype=np.float64), offsets, hop_s=hop, metric=coll.metric,
                        query_duration_s=wave.size / sr, max_files=max_files)
    if not refine:
        return locs
    out = []
    for loc in locs:
        if loc.rank <= REFINE_TOP:
            r = refine_offset(wave, sr, loc.path, loc.offset_s, search_s=hop)
            if r is not None:
                loc = dataclasses.replace(loc, offset_s=r.offset_s, end_s=r.offset_s + wave.size / sr, refined=True)
        out.append(loc)
    return out
