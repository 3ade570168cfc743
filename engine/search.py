"""Search a collection: a warm :class:`Searcher` holding the embedder, index, post-processing and metadata.

A :class:`Searcher` loads once what every query needs — the collection's index (saved, or built
in memory when the saved one is stale), its post-processing, and per-row metadata as numpy
columns (:class:`audiosim.engine.store.ItemTable`) — and builds the embedder on the first audio
query. Each search first checks (one ``stat``) whether another process committed a new
revision and, if so, reloads before answering, so a long-lived searcher (``audiosim serve``)
follows ``audiosim index`` runs without failing a request.

Queries (exactly one kind per call):

* ``clip=PATH`` -- an audio file, pooled as a whole (``start_s``/``end_s`` select a time range);
* ``waveform=ARRAY, sample_rate=SR`` -- samples in memory (same range options);
* ``vector=ARRAY`` -- a vector in the collection's stored space (raw pooled, like the Parquet
  ``embedding`` column); post-processing is applied as for stored vectors;
* ``id=INT`` -- "more like this": the stored item's own vector, read from the index (no
  re-embedding).

A list of clips, waveforms or ids, or a 2-D vector array, is a batch: one result list per
query. Filters (``label``, ``path_prefix``, ``min_duration_s``/``max_duration_s``,
``exclude_same_file``) run inside FAISS through an id selector, so ``k`` hits come back whenever
at least ``k`` items match; approximate indexes that return fewer are completed by an exact
search over the matching items. Metadata of the hits is fetched in O(k log n), so the cost of
a warm search beyond the FAISS call does not grow with the collection.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.engine.store import Collection, ItemTable
from audiosim.errors import AudiosimError, CollectionChangingError, CollectionMismatchError, ItemNotFoundError

EXACT_FALLBACK_MAX = 200_000
MIN_CANDIDATES = 10


@dataclass(frozen=True)
class Hit:
    """One result: rank (1-based), score (cosine similarity, Euclidean distance, or a tag's class score), the item.

    In a collection that stores classifier tags, ``tags`` are the item's top classes and
    ``shared_tags`` the classes it shares with the query ("why similar").
    """

    rank: int
    score: float
    id: int
    path: str
    label: str | None
    offset_s: float
    duration_s: float
    tags: tuple = ()
    shared_tags: tuple = ()

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("tags", "shared_tags")}
        if self.tags:
            d["tags"] = [t.to_dict() for t in self.tags]
            d["shared_tags"] = [t.to_dict() for t in self.shared_tags]
        return d


@dataclass(frozen=True)
class Item:
    """A stored vector's metadata."""

    id: int
    path: str
    label: str | None
    offset_s: float
    duration_s: float
    content_sha256: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Timing:
    """Where a query's time went, in milliseconds."""

    decode_ms: float = 0.0
    embed_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = 0.0

    def to_dict(self) -> dict:
        return {k: round(v, 3) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Filters:
    """Which items a search may return."""

    label: tuple[str, ...] | None = None
    path_prefix: str | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    exclude_same_file: bool = False

    @classmethod
    def make(cls, *, label=None, path_prefix=None, min_duration_s=None, max_duration_s=None,
             exclude_same_file=False) -> "Filters":
        labels = None if label is None else ((label,) if isinstance(label, str) else tuple(label))
        prefix = None if path_prefix in (None, "") else str(Path(path_prefix).expanduser().resolve())
        return cls(label=labels, path_prefix=prefix, min_duration_s=min_duration_s, max_duration_s=max_duration_s,
                   exclude_same_file=bool(exclude_same_file))

    @property
    def restricts(self) -> bool:
        return (self.label is not None or self.path_prefix is not None or self.min_duration_s is not None
                or self.max_duration_s is not None)


@dataclass(frozen=True)
class _State:
    items: ItemTable
    index: object  # engine.indexing.SearchIndex
    revision: int
    key: tuple
    class_map: object = None  # engine.tags.ClassMap of a collection with tags


def _state_key(m) -> tuple:
    """What a loaded state depends on: the data revision and how the index sees it."""
    return (m.revision, m.postprocess, m.index_kind, tuple(sorted(m.index_params.items())),
            m.index.dir if m.index_fresh else None)


def embedder_for(collection: Collection, *, weights=None, device: str | None = None, **options):
    """The embedder that made ``collection``'s vectors (its stored options plus ``options``), checked by its weights."""
    from audiosim.engine.embedders import make_embedder

    opts = {k: v for k, v in collection.manifest.embedder_options.items() if v is not None}
    opts.update(options)
    emb = make_embedder(collection.embedder.name, weights=weights, device=device, options=opts)
    want, got = collection.embedder, emb.info
    for key in ("version", "weights_sha256", "dim", "sample_rate"):
        if getattr(want, key) != getattr(got, key):
            raise CollectionMismatchError(
                f"the {want.name} embedder resolved now differs from the one that built {collection.root} "
                f"({key}: collection {getattr(want, key)!r}, now {getattr(got, key)!r}); pass --weights with the original weights"
            )
    return emb


def embed_file(embedder, path: str | Path, pooling, *, segment_s: float | None = None, segment_hop_s: float | None = None,
               nan_policy: str = "error") -> list[tuple[float, float, np.ndarray]]:
    """``(offset_s, duration_s, vector)`` for one file, exactly as ingest computes them."""
    from audiosim.engine.mappers import EmbedMapper
    from audiosim.engine.pipeline import FileItem, decode_item

    d = decode_item(FileItem(path=str(path)), sample_rate=embedder.info.sample_rate, nan_policy=nan_policy)
    if d.error is not None:
        raise d.error
    rows = EmbedMapper(embedder, pooling, segment_s=segment_s, segment_hop_s=segment_hop_s)(d)
    return [(float(o), float(t), v) for o, t, v in zip(rows.offset_s, rows.duration_s, rows.embedding)]


class Searcher:
    """Warm search over one collection; see the module docstring. Safe to call from several threads."""

    def __init__(self, collection: Collection | str | Path, *, weights=None, device: str | None = None,
                 **embedder_options) -> None:
        root = collection.root if isinstance(collection, Collection) else Path(collection)
        self.collection = Collection.open(root)  # a private handle: refreshing it never moves the caller's
        self._embedder_args = {"weights": weights, "device": device, **embedder_options}
        self._embedder = None
        self._pooler = None
        self._embed_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._state: _State | None = None
        self._load()

    # ------------------------------------------------------------------ state
    def _load(self) -> _State:
        from audiosim.engine.indexing import load_for_search

        for _ in range(5):
            key = _state_key(self.collection.manifest)
            items = self.collection.items()
            index = load_for_search(self.collection)
            if _state_key(self.collection.manifest) == key and index.revision == key[0]:
                self._state = _State(items=items, index=index, revision=key[0], key=key,
                                     class_map=self.collection.class_map)
                return self._state
        raise CollectionChangingError(f"{self.collection.root} kept changing while it was loaded; try again")

    def refresh(self) -> bool:
        """Reload if another process committed a new revision; True when it did."""
        self.collection.refresh()
        if self._state is not None and self._state.key == _state_key(self.collection.manifest):
            return False
        with self._load_lock:
            if self._state is not None and self._state.key == _state_key(self.collection.manifest):
                return False
            self._load()
            return True

    @property
    def revision(self) -> int:
        return self._state.revision

    @property
    def items(self) -> ItemTable:
        return self._state.items

    @property
    def embedder(self):
        """The collection's embedder, built on first use (checked against the weights that made the vectors)."""
        if self._embedder is None:
            with self._embed_lock:
                if self._embedder is None:
                    self._embedder = embedder_for(self.collection, **self._embedder_args)
        return self._embedder

    @property
    def pooler(self):
        """The collection's pooling with this embedder (leaving out digital silence when the collection does)."""
        if self._pooler is None:
            from audiosim.engine.mappers import FramePooler

            self._pooler = FramePooler(self.embedder, self.collection.pooling)
        return self._pooler

    def warm(self) -> "Searcher":
        """Build the embedder now rather than on the first audio query."""
        _ = self.embedder
        return self

    def __len__(self) -> int:
        return len(self._current().items)

    # ------------------------------------------------------------------ items
    def item(self, id: int) -> Item:
        """Metadata of a stored vector; an unknown id is an :class:`AudiosimError`."""
        state = self._current()
        pos = int(state.items.positions(np.array([int(id)]))[0])
        if pos < 0:
            raise ItemNotFoundError(f"{self.collection.root} holds no item with id {id}")
        return self._item_at(state.items, pos)

    @staticmethod
    def _item_at(items: ItemTable, pos: int) -> Item:
        lc = int(items.label_code[pos])
        return Item(id=int(items.ids[pos]), path=items.paths[int(items.path_code[pos])],
                    label=items.labels[lc] if lc >= 0 else None, offset_s=float(items.offset_s[pos]),
                    duration_s=float(items.duration_s[pos]),
                    content_sha256=items.content_sha256[pos] if items.content_sha256 else "")

    def _current(self) -> _State:
        self.refresh()
        return self._state

    # ------------------------------------------------------------------ search
    def search(self, *, clip=None, waveform=None, sample_rate: int | None = None, vector=None, id=None, tag=None,
               k: int = 10, start_s: float | None = None, end_s: float | None = None, label=None,
               path_prefix: str | None = None, min_duration_s: float | None = None, max_duration_s: float | None = None,
               exclude_same_file: bool = False, group: str | None = None):
        """Top-``k`` results for one query (a list) or a batch (a list of lists); see the module docstring.

        ``tag`` alone ranks the collection by that class's stored score; with a query it keeps only
        items carrying the tag. ``group``: ``region`` (hits of one file that touch or overlap merge
        into :class:`audiosim.engine.regions.Region` results; the default for segment collections),
        ``file`` (one result per file) or ``none`` (every hit; the default otherwise).
        """
        return self.search_timed(clip=clip, waveform=waveform, sample_rate=sample_rate, vector=vector, id=id, tag=tag,
                                 k=k, start_s=start_s, end_s=end_s, label=label, path_prefix=path_prefix,
                                 min_duration_s=min_duration_s, max_duration_s=max_duration_s,
                                 exclude_same_file=exclude_same_file, group=group)[0]

    def search_timed(self, *, clip=None, waveform=None, sample_rate: int | None = None, vector=None, id=None, tag=None,
                     k: int = 10, start_s: float | None = None, end_s: float | None = None, label=None,
                     path_prefix: str | None = None, min_duration_s: float | None = None,
                     max_duration_s: float | None = None, exclude_same_file: bool = False, group: str | None = None):
        """Like :meth:`search`, returning ``(results, Timing)``."""
        from audiosim.engine.regions import check_mode, group_hits

        t0 = time.perf_counter()
        given = [n for n, v in (("clip", clip), ("waveform", waveform), ("vector", vector), ("id", id)) if v is not None]
        if len(given) > 1 or (not given and tag is None):
            raise AudiosimError("give exactly one query: clip=, waveform= (with sample_rate=), vector= or id= "
                                f"(or tag= alone to rank by a class; got {', '.join(given) or 'none'})")
        if int(k) < 1:
            raise AudiosimError(f"k must be at least 1, got {k}")
        if (start_s is not None or end_s is not None) and (vector is not None or id is not None or not given):
            raise AudiosimError("start_s/end_s select a time range of a query clip or waveform, not of a vector, id or tag")
        mode = check_mode(group) if group is not None else ("region" if self.collection.segment_s else "none")
        filters = Filters.make(label=label, path_prefix=path_prefix, min_duration_s=min_duration_s,
                               max_duration_s=max_duration_s, exclude_same_file=exclude_same_file)
        state = self._current()
        tag_index = self._tag_index(tag) if tag is not None else None
        if not given:  # rank the collection by a class of the classifier
            t = time.perf_counter()
            hits = self._rank_by_tag(state, tag_index, int(k) if mode == "none" else None, filters)
            results = [group_hits(hits, mode=mode, metric="cosine")[: int(k)] if mode != "none" else hits]
            return results[0], Timing(search_ms=(time.perf_counter() - t) * 1e3, total_ms=(time.perf_counter() - t0) * 1e3)
        q = self._queries(state, clip=clip, waveform=waveform, sample_rate=sample_rate, vector=vector, id=id,
                          start_s=start_s, end_s=end_s)
        t = time.perf_counter()
        want = int(k) if mode == "none" else max(8 * int(k), 50)  # regions need the neighbouring segments too
        results = self._search_index(state, q.vectors, q.own_paths, want, filters, tag_index=tag_index,
                                     query_tags=q.tags)
        if mode != "none":
            results = [group_hits(row, mode=mode, metric=self.collection.metric)[: int(k)] for row in results]
        search_ms = (time.perf_counter() - t) * 1e3
        timing = Timing(decode_ms=q.decode_ms, embed_ms=q.embed_ms, search_ms=search_ms,
                        total_ms=(time.perf_counter() - t0) * 1e3)
        return (results if q.batch else results[0]), timing

    def locate(self, *, clip=None, waveform=None, sample_rate: int | None = None, start_s: float | None = None,
               end_s: float | None = None, top_m: int = 20, max_files: int | None = 10, label=None,
               path_prefix: str | None = None):
        """Where an excerpt longer than one segment sits in the collection's recordings.

        The query is cut into the collection's segments; each segment's ``top_m`` matches vote on
        the excerpt's offset per file (:func:`audiosim.engine.locate.locate`). Returns
        :class:`audiosim.engine.locate.Location` records, best first.
        """
        from audiosim.engine.locate import locate
        from audiosim.engine.mappers import segment_frames

        coll = self.collection
        if not coll.segment_s:
            raise AudiosimError(f"{coll.root} stores one vector per file; locating an excerpt needs a segment collection "
                                "(index it with --segment SECONDS [--segment-hop SECONDS])")
        if (clip is None) == (waveform is None) or isinstance(clip, (list, tuple)) or isinstance(waveform, (list, tuple)):
            raise AudiosimError("locate takes one query: clip=PATH, or waveform= with sample_rate=")
        state = self._current()
        t = time.perf_counter()
        wave = self._load_clip(str(clip)) if clip is not None else self._prepare_waveform(waveform, sample_rate)
        wave = self._crop(wave, start_s, end_s)
        sr = self.embedder.info.sample_rate
        with self._embed_lock:
            frames, times = self.embedder.embed_frames(wave)
        segs = segment_frames(frames, times, segment_s=coll.segment_s, segment_hop_s=coll.segment_hop_s,
                              duration_s=wave.size / sr, pooling=self.pooler)
        Q = state.index.transform(np.stack([v for _, _, v in segs]))
        filters = Filters.make(label=label, path_prefix=path_prefix)
        hits = self._search_index(state, Q, [None] * len(Q), int(top_m), filters)
        return locate(np.array([o for o, _, _ in segs]), hits, hop_s=coll.segment_hop_s or coll.segment_s,
                      metric=coll.metric, query_duration_s=wave.size / sr, max_files=max_files)

    # ------------------------------------------------------------------ internals
    def _queries(self, state: _State, *, clip, waveform, sample_rate, vector, id, start_s, end_s) -> "_Queries":
        """The query vectors in index space, the files they come from, and their tags."""
        decode_ms = embed_ms = 0.0
        tags_wanted = _tag_arrays(state.items) is not None
        if clip is not None or waveform is not None:
            batch = isinstance(clip if clip is not None else waveform, (list, tuple))
            t = time.perf_counter()
            if clip is not None:
                paths = [str(c) for c in (clip if batch else [clip])]
                waves = [self._load_clip(p) for p in paths]
                own = [str(Path(p).expanduser().resolve()) for p in paths]
            else:
                if sample_rate is None:
                    raise AudiosimError("waveform= needs sample_rate= (Hz)")
                waves = [self._prepare_waveform(w, sample_rate) for w in (waveform if batch else [waveform])]
                own = [None] * len(waves)
            decode_ms = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            embedded = [self._embed(self._crop(w, start_s, end_s), with_tags=tags_wanted) for w in waves]
            Q = state.index.transform(np.stack([v for v, _ in embedded]))
            tags = [tg for _, tg in embedded]
            embed_ms = (time.perf_counter() - t) * 1e3
            return _Queries(Q, own, tags, batch, decode_ms, embed_ms)
        if vector is not None:
            v = np.asarray(vector, dtype=np.float32)
            batch = v.ndim == 2
            v = np.atleast_2d(v)
            if v.ndim != 2 or v.shape[1] != self.collection.dim:
                raise AudiosimError(f"vector queries must have the collection's dimension {self.collection.dim} "
                                    f"(stored space, before post-processing); got shape {tuple(np.shape(vector))}")
            if not np.isfinite(v).all():
                raise AudiosimError("vector queries must be finite")
            return _Queries(state.index.transform(v), [None] * len(v), [()] * len(v), batch, 0.0, 0.0)
        batch = isinstance(id, (list, tuple, np.ndarray))
        ids = np.asarray(list(id) if batch else [id], dtype=np.int64)
        pos = state.items.positions(ids)
        if (pos < 0).any():
            raise ItemNotFoundError(f"{self.collection.root} holds no item with id {int(ids[pos < 0][0])}")
        own = [state.items.paths[int(state.items.path_code[p])] for p in pos]
        tags = [self._stored_tags(state.items, int(p)) for p in pos]
        return _Queries(_stored(state, ids), own, tags, batch, 0.0, 0.0)

    def _load_clip(self, path: str) -> np.ndarray:
        from audiosim.engine.audio import load_audio

        return load_audio(path, sample_rate=self.embedder.info.sample_rate)

    def _prepare_waveform(self, waveform, sample_rate: int) -> np.ndarray:
        from audiosim.engine.audio import resample, to_mono_float

        if sample_rate is None:
            raise AudiosimError("waveform= needs sample_rate= (Hz)")
        x = to_mono_float(np.asarray(waveform), source="waveform")
        return resample(x, orig_sr=int(sample_rate), target_sr=self.embedder.info.sample_rate)

    def _crop(self, wave: np.ndarray, start_s: float | None, end_s: float | None) -> np.ndarray:
        if start_s is None and end_s is None:
            return wave
        sr = self.embedder.info.sample_rate
        dur = wave.size / sr
        a = 0.0 if start_s is None else float(start_s)
        b = dur if end_s is None else min(float(end_s), dur)
        if a < 0 or b <= a or a >= dur:
            raise AudiosimError(f"the time range {a:g}-{b:g} s is empty or outside the query ({dur:.2f} s long)")
        return wave[int(round(a * sr)):int(round(b * sr))]

    def _embed(self, wave: np.ndarray, *, with_tags: bool = False) -> tuple[np.ndarray, tuple]:
        """The query's pooled vector (stored space) and, in a tag collection, its top tags."""
        if not with_tags:
            with self._embed_lock:
                frames, _ = self.embedder.embed_frames(wave)
            return self.pooler(frames), ()
        from audiosim.engine.tags import pool_scores

        with self._embed_lock:
            frames, _, scores = self.embedder.embed_frames_with_scores(wave)
        return self.pooler(frames), tuple(self._state.class_map.describe(pool_scores(scores)[0]))

    def _tag_index(self, tag: str) -> int:
        cmap = self._state.class_map
        if cmap is None or _tag_arrays(self._state.items) is None:
            raise AudiosimError(f"{self.collection.root} stores no classifier tags (its embedder "
                                f"{self.collection.embedder.name!r} has no classifier head, or it was indexed before tags "
                                "existed); tag search needs a collection indexed with yamnet or panns")
        return cmap.resolve(tag)

    def _stored_tags(self, items: ItemTable, pos: int) -> tuple:
        if items.tag_ids is None:
            return ()
        from audiosim.engine.tags import Tag

        names = self._state.class_map.names
        return tuple(Tag(names[i], i, s) for i, s in zip(items.tag_ids[pos].tolist(), items.tag_scores[pos].tolist())
                     if 0 <= i < len(names))

    def _hit(self, items: ItemTable, rank: int, score: float, pos: int, query_tags: tuple) -> Hit:
        from audiosim.engine.tags import shared_tags

        it = self._item_at(items, pos)
        tags = self._stored_tags(items, pos)
        return Hit(rank=rank, score=float(score), id=it.id, path=it.path, label=it.label, offset_s=it.offset_s,
                   duration_s=it.duration_s, tags=tags, shared_tags=tuple(shared_tags(query_tags, tags)) if tags else ())

    def _allowed(self, items: ItemTable, filters: Filters, tag_index: int | None = None) -> np.ndarray | None:
        """Boolean mask of the rows the filters allow (None: all)."""
        if not filters.restricts and tag_index is None:
            return None
        mask = np.ones(len(items), dtype=bool)
        if filters.label is not None:
            codes = [i for i, name in enumerate(items.labels) if name in set(filters.label)]
            mask &= np.isin(items.label_code, codes)
        if filters.path_prefix is not None:
            from audiosim.files import is_under

            under = np.fromiter((is_under(p, filters.path_prefix) for p in items.paths), dtype=bool, count=len(items.paths))
            mask &= under[items.path_code] if under.size else False
        if filters.min_duration_s is not None:
            mask &= items.duration_s >= filters.min_duration_s
        if filters.max_duration_s is not None:
            mask &= items.duration_s <= filters.max_duration_s
        if tag_index is not None:
            from audiosim.engine.tags import has_tag

            mask &= has_tag(*_tag_arrays(items), tag_index)
        return mask

    def _rank_by_tag(self, state: _State, tag_index: int, k: int | None, filters: Filters) -> list[Hit]:
        from audiosim.engine.tags import rank_by_tag

        items = state.items
        rows, scores = rank_by_tag(*_tag_arrays(items), tag_index)
        mask = self._allowed(items, filters)
        if mask is not None:
            keep = mask[rows]
            rows, scores = rows[keep], scores[keep]
        if k is not None:
            rows, scores = rows[:k], scores[:k]
        return [self._hit(items, rank, s, int(p), ()) for rank, (p, s) in enumerate(zip(rows, scores), 1)]

    def _search_index(self, state: _State, Q: np.ndarray, own: Sequence[str | None], k: int, filters: Filters, *,
                      tag_index: int | None = None, query_tags: Sequence[tuple] | None = None) -> list[list[Hit]]:
        items, vindex = state.items, state.index.index
        if len(items) == 0:
            return [[] for _ in range(len(Q))]
        base = self._allowed(items, filters, tag_index)
        path_code = {p: i for i, p in enumerate(items.paths)} if filters.exclude_same_file else {}
        out = []
        for n, (q, own_path) in enumerate(zip(Q, own)):
            mask = base
            if filters.exclude_same_file and own_path is not None and own_path in path_code:
                mask = (np.ones(len(items), bool) if mask is None else mask.copy())
                mask &= items.path_code != path_code[own_path]
            # ask the index for at least MIN_CANDIDATES: approximate kinds are tuned for recall at 10
            if mask is None:
                kk = min(max(k, MIN_CANDIDATES), len(items))
                res = vindex.search(q[None, :], kk, fetch=state.index.fetch)
                scores, ids = res.scores[0], res.ids[0]
            else:
                allowed = items.ids[mask]
                kk = min(max(k, MIN_CANDIDATES), allowed.size)
                if kk == 0:
                    out.append([])
                    continue
                res = vindex.search(q[None, :], kk, allowed_ids=allowed, fetch=state.index.fetch)
                scores, ids = res.scores[0], res.ids[0]
                if (ids >= 0).sum() < kk and allowed.size <= EXACT_FALLBACK_MAX:
                    scores, ids = self._exact(state, q, allowed, kk)
            keep = ids >= 0
            scores, ids = scores[keep][:k], ids[keep][:k]
            qtags = query_tags[n] if query_tags is not None else ()
            out.append([self._hit(items, rank, s, int(p), qtags)
                        for rank, (s, p) in enumerate(zip(scores, items.positions(ids)), 1)])
        return out

    @staticmethod
    def _exact(state: _State, q: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores over the allowed ids (completes what an approximate index missed under a filter)."""
        vindex = state.index.index
        X = vindex.prepare(_stored(state, allowed))
        qq = vindex.prepare(q[None, :])[0]
        if vindex.metric == "cosine":
            s = X @ qq
            order = np.argsort(-s, kind="stable")[:k]
        else:
            s = np.sqrt(np.maximum(((X - qq) ** 2).sum(axis=1), 0.0))
            order = np.argsort(s, kind="stable")[:k]
        return s[order].astype(np.float32), allowed[order]


def _stored(state: _State, ids: np.ndarray) -> np.ndarray:
    """The vectors of ``ids`` in index space, exactly: from the index when it keeps full vectors, else from Parquet."""
    vindex = state.index.index
    if vindex.code_bytes() >= 4 * vindex.dim:  # flat, HNSW-Flat, IVF-Flat keep float vectors
        return vindex.reconstruct(ids)
    return state.index.fetch(np.asarray(ids, dtype=np.int64))


def _tag_arrays(items: ItemTable):
    """(class ids [n, N], scores [n, N]) of the stored tags, or None for a collection without tags."""
    return None if items.tag_ids is None else (items.tag_ids, items.tag_scores)


@dataclass(frozen=True)
class _Queries:
    vectors: np.ndarray  # index space
    own_paths: list
    tags: list
    batch: bool
    decode_ms: float
    embed_ms: float
