"""Search a collection: a warm :class:`Searcher` holding the embedder, index, post-processing and metadata.

A :class:`Searcher` loads once what every query needs — the collection's index (saved, or built
in memory when the saved one is stale), its post-processing, and per-row metadata as numpy
columns (:class:`audiosim.engine.store.store.ItemTable`) — and builds the embedder on the first audio
query. Each search first checks (one ``stat``) whether another process committed a new
revision and, if so, reloads before answering, so a long-lived searcher (``audiosim serve``)
follows ``audiosim index`` runs without failing a request.

Queries (exactly one kind per call):

* ``clip=PATH`` -- an audio file, pooled as a whole (``start_s``/``end_s`` select a time range);
* ``waveform=ARRAY, sample_rate=SR`` -- samples in memory (same range options);
* ``vector=ARRAY`` -- a vector in the collection's stored space (raw pooled, like the Parquet
  ``embedding`` column); post-processing is applied as for stored vectors;
* ``text=STR`` -- a description ("a dog barking"), embedded by the collection's text encoder
  (CLAP through the ``hf`` embedder) into the audio space; other collections raise
  :class:`audiosim.errors.NoTextEncoderError`;
* ``id=INT`` -- "more like this": the stored item's own vector, read from its part's vector file
  (no re-embedding).

A list of clips, waveforms or ids, or a 2-D vector array, is a batch: one result list per
query. Filters (``label``, ``path_prefix``, ``min_duration_s``/``max_duration_s``,
``exclude_same_file``) become a mask over the rows (computed once per filter and revision) and go
to the planner (:mod:`audiosim.engine.search.planner`): few allowed rows are scored exactly,
gathered in one read from the parts' vector files; more are searched in the index with its
knob widened for the selectivity (IVF, flat: inside FAISS through an id selector; HNSW:
candidates filtered afterwards), and completed exactly only when fewer than ``k`` allowed hits
come back. "More like this" (``id=``) reads the item's stored vector from its vector file.
Metadata of the hits is fetched in O(k log n), so the cost of a warm search beyond the index
call does not grow with the collection.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.engine.audio.decode import load_audio, resample, to_mono_float
from audiosim.engine.ingest.mappers import EmbedMapper, FramePooler
from audiosim.engine.ingest.pipeline import FileItem, decode_item
from audiosim.engine.models.embedders import embedder_class, make_embedder
from audiosim.engine.models.weights import without_baseline_hint
from audiosim.engine.models.tags import Tag, has_tag, pool_scores, rank_by_tag, shared_tags
from audiosim.engine.search.excerpt import locate_excerpt
from audiosim.engine.search.planner import search_filtered
from audiosim.engine.search.query import Filters, Query, SearchResult, split_fields
from audiosim.engine.search.regions import check_mode, group_hits
from audiosim.engine.store.indexing import load_for_search
from audiosim.engine.store.store import CollectionStore, ItemTable
from audiosim.errors import (AudiosimError, CollectionChangingError, CollectionMismatchError, InvalidOptionError,
                             ItemNotFoundError, LocateError, NoClassifierHeadError, NoTextEncoderError,
                             WeightsNotFoundError)
from audiosim.files import is_under
from audiosim.values import finite_number, item_id

MIN_CANDIDATES = 10
MASK_CACHE = 32  # filter masks kept per loaded revision (n bytes each)


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
class _State:
    items: ItemTable
    index: object  # engine.indexing.SearchIndex
    revision: int
    key: tuple
    class_map: object = None  # engine.tags.ClassMap of a collection with tags
    masks: dict = field(default_factory=dict)  # (filters, tag) -> the allowed-rows mask, for this revision
    gathered: dict = field(default_factory=dict)  # (filters, tag) -> the allowed vectors the planner scored exactly
    direct: "_Direct | None" = None  # what a plain single-vector search needs (None: it takes the general path)


@dataclass(frozen=True)
class _Direct:
    """The single-vector path's view of one loaded state, worked out once when it loads (see :meth:`Searcher.search`).

    Only for states where a vector query needs nothing but the index call and the hits' metadata:
    no post-processing, no stored tags, no segments (no grouping by default), at least one row.
    """

    index: object  # the VectorIndex
    fetch: object  # ids -> stored vectors (exact re-ranking)
    dim: int
    cosine: bool
    candidates: int  # results asked of the index for k <= MIN_CANDIDATES
    rows: int
    first_id: int | None  # the ids are first_id, first_id + 1, ...: a hit's row is its id - first_id


def _direct(items: ItemTable, index, segment_s) -> "_Direct | None":
    if index.postprocessor is not None or items.tag_ids is not None or segment_s or len(items) == 0:
        return None
    ids = items.ids
    contiguous = int(ids[-1]) - int(ids[0]) == ids.size - 1  # sorted and unique: a range
    vindex = index.index
    return _Direct(index=vindex, fetch=index.fetch, dim=int(vindex.dim), cosine=vindex.metric == "cosine",
                   candidates=min(MIN_CANDIDATES, len(items)), rows=len(items), first_id=int(ids[0]) if contiguous else None)


def _state_key(m) -> tuple:
    """What a loaded state depends on: the data revision and how the index sees it."""
    return (m.revision, m.postprocess, m.index_kind, tuple(sorted(m.index_params.items())),
            m.index.dir if m.index_fresh else None)


def embedder_for(collection: CollectionStore, *, weights=None, device: str | None = None, **options):
    """The embedder that made ``collection``'s vectors (its stored options plus ``options``), checked by its weights."""

    opts = {k: v for k, v in collection.manifest.embedder_options.items() if v is not None}
    opts.update(options)
    try:
        emb = make_embedder(collection.embedder.name, weights=weights, device=device, options=opts)
    except WeightsNotFoundError as e:  # a search cannot switch embedders: the vectors fix the model
        raise WeightsNotFoundError(without_baseline_hint(
            str(e), instead=f"{collection.root} was indexed with {collection.embedder.name}, so queries need the same "
                            "weights (query --weights PATH).")) from None
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

    d = decode_item(FileItem(path=str(path)), sample_rate=embedder.info.sample_rate, nan_policy=nan_policy)
    if d.error is not None:
        raise d.error
    rows = EmbedMapper(embedder, pooling, segment_s=segment_s, segment_hop_s=segment_hop_s)(d)
    return [(float(o), float(t), v) for o, t, v in zip(rows.offset_s, rows.duration_s, rows.embedding)]


class Searcher:
    """Warm search over one collection; see the module docstring. Safe to call from several threads."""

    def __init__(self, collection: CollectionStore | str | Path, *, weights=None, device: str | None = None,
                 **embedder_options) -> None:
        root = collection.root if isinstance(collection, CollectionStore) else Path(collection)
        self.collection = CollectionStore.open(root)  # a private handle: refreshing it never moves the caller's
        self._embedder_args = {"weights": weights, "device": device, **embedder_options}
        self._embedder = None
        self._pooler = None
        self._embed_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._state: _State | None = None
        self._seen = None  # the manifest snapshot the loaded state was last found current for
        self._load()

    # ------------------------------------------------------------------ state
    def _load(self) -> _State:
        for _ in range(5):
            key = _state_key(self.collection.manifest)
            items = self.collection.items()
            index = load_for_search(self.collection)
            if _state_key(self.collection.manifest) == key and index.revision == key[0]:
                self._state = _State(items=items, index=index, revision=key[0], key=key,
                                     class_map=self.collection.class_map,
                                     direct=_direct(items, index, self.collection.segment_s))
                return self._state
        raise CollectionChangingError(f"{self.collection.root} kept changing while it was loaded; try again")

    def refresh(self) -> bool:
        """Reload if another process committed a new revision; True when it did."""
        self.collection.refresh()
        manifest = self.collection.manifest
        if self._state is not None and (self._seen is manifest or self._state.key == _state_key(manifest)):
            self._seen = manifest  # the state key is computed once per manifest snapshot, not per query
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
    def search(self, query: Query | None = None, *, filters: Filters | None = None, k: int = 10,
               group: str | None = None, **fields) -> SearchResult | list[SearchResult]:
        """Top-``k`` results for one query, or for each query of a batch; see the module docstring.

        ``query`` (:class:`~audiosim.engine.search.query.Query`) and ``filters``
        (:class:`~audiosim.engine.search.query.Filters`), or their fields as keywords:
        ``search(clip="dog.wav", k=5, label="dog")``; keywords complete or override the objects.

        Returns one :class:`~audiosim.engine.search.query.SearchResult` (a list, best first) for
        one query, a list of them (one per query, in order) for a batch: a list of clips, waveforms
        or ids, or a 2-D vector array. The results are :class:`Hit` objects, or
        :class:`audiosim.engine.search.regions.Region` objects when ``result.grouped``.

        ``tag`` alone ranks the collection by that class's stored score; with a query it keeps only
        items carrying the tag. ``group``: ``region`` (hits of one file that touch or overlap merge
        into :class:`audiosim.engine.search.regions.Region` results; the default for segment collections),
        ``file`` (one result per file) or ``none`` (every hit; the default otherwise).
        """
        if query is None and filters is None and group is None and "vector" in fields:
            if len(fields) == 1:
                found = self._search_vector(fields["vector"], k)
                if found is not None:
                    return found
            elif len(fields) == 2 and type(fields.get("label")) is str:
                found = self._search_vector(fields["vector"], k, label=fields["label"])
                if found is not None:
                    return found
        return self.search_timed(query, filters=filters, k=k, group=group, **fields)[0]

    def _search_vector(self, vector, k, *, label: str | None = None) -> SearchResult | None:
        """``search(vector=v, k=k)`` (or with one ``label`` filter) for the common case -- one finite float32 vector
        of the collection's dimension, a collection whose state allows it (:class:`_Direct`) -- with nothing checked
        twice and as few numpy calls as it takes (after the index call each one starts with cold caches); None for
        anything else (the general path answers it -- the same hits, the scores equal up to float32 rounding -- and
        raises the errors). A label filter goes through the planner as on the general path, with the same mask and
        gathered-vector caches."""
        if type(vector) is not np.ndarray or vector.ndim != 1 or type(k) is not int or k < 1:
            return None
        if vector.dtype != np.float32 or not vector.flags.c_contiguous:
            if vector.dtype.kind != "f":
                return None
            vector = np.ascontiguousarray(vector, dtype=np.float32)
        state = self._current()
        d = state.direct
        if d is None or vector.shape[0] != d.dim:
            return None
        sq = float(np.dot(vector, vector))
        if not math.isfinite(sq):  # NaN or infinity somewhere (or an overflow): the general path decides
            return None
        q = (vector * np.float32(1.0 / max(math.sqrt(sq), 1e-12)) if d.cosine else vector).reshape(1, -1)
        if label is not None:
            filters = Filters(label=(label,))
            mask = self._cached_mask(state, filters, None)
            scores, ids, _ = search_filtered(d.index, q[0], max(k, MIN_CANDIDATES), mask=mask, ids=state.items.ids,
                                             fetch=d.fetch, cache=state.gathered,
                                             cache_key=_mask_key(filters, None), prepared=True)
        else:
            scores, ids = d.index.search_prepared(q, d.candidates if k <= d.candidates else min(k, d.rows),
                                                  fetch=d.fetch)
            scores, ids = scores[0], ids[0]
        if ids.size and ids[-1] < 0:  # fewer hits than asked (-1 ids sort last)
            keep = ids >= 0
            scores, ids = scores[keep], ids[keep]
        if ids.size > k:
            scores, ids = scores[:k], ids[:k]
        pos = ids - d.first_id if d.first_id is not None else None
        return SearchResult(self._hits(state.items, scores, ids, (), pos=pos), group="none")

    def search_timed(self, query: Query | None = None, *, filters: Filters | None = None, k: int = 10,
                     group: str | None = None, **fields) -> tuple[SearchResult | list[SearchResult], Timing]:
        """Like :meth:`search`, returning ``(results, Timing)``."""

        t0 = time.perf_counter()
        if query is None and filters is None and group is None and len(fields) == 1 and "vector" in fields:
            found = self._search_vector(fields["vector"], k)
            if found is not None:
                ms = (time.perf_counter() - t0) * 1e3
                return found, Timing(search_ms=ms, total_ms=ms)
        query, filters = split_fields(query, filters, fields)
        if int(k) < 1:
            raise InvalidOptionError(f"k must be at least 1, got {k}")
        tag, given = query.tag, query.kind != "tag"
        mode = check_mode(group) if group is not None else ("region" if self.collection.segment_s else "none")
        state = self._current()
        tag_index = self._tag_index(tag) if tag is not None else None
        if not given:  # rank the collection by a class of the classifier
            t = time.perf_counter()
            hits = self._rank_by_tag(state, tag_index, int(k) if mode == "none" else None, filters)
            results = [group_hits(hits, mode=mode, metric="cosine")[: int(k)] if mode != "none" else hits]
            timing = Timing(search_ms=(time.perf_counter() - t) * 1e3, total_ms=(time.perf_counter() - t0) * 1e3)
            return SearchResult(results[0], group=mode), timing
        q = self._queries(state, clip=query.clip, waveform=query.waveform, sample_rate=query.sample_rate,
                          vector=query.vector, id=query.id, start_s=query.start_s, end_s=query.end_s, text=query.text)
        t = time.perf_counter()
        want = int(k) if mode == "none" else max(8 * int(k), 50)  # regions need the neighbouring segments too
        results = self._search_index(state, q.vectors, q.own_paths, want, filters, tag_index=tag_index,
                                     query_tags=q.tags)
        if mode != "none":
            results = [group_hits(row, mode=mode, metric=self.collection.metric)[: int(k)] for row in results]
        search_ms = (time.perf_counter() - t) * 1e3
        timing = Timing(decode_ms=q.decode_ms, embed_ms=q.embed_ms, search_ms=search_ms,
                        total_ms=(time.perf_counter() - t0) * 1e3)
        results = [SearchResult(row, group=mode) for row in results]
        return (results if q.batch else results[0]), timing

    def locate(self, *, clip=None, waveform=None, sample_rate: int | None = None, start_s: float | None = None,
               end_s: float | None = None, top_m: int = 20, max_files: int | None = 10, label=None,
               path_prefix: str | None = None):
        """Where an excerpt longer than one segment sits in the collection's recordings.

        The query is cut into the collection's segments; each segment's ``top_m`` matches vote on
        the excerpt's offset per file (:func:`audiosim.engine.search.locate.locate`). Returns
        :class:`audiosim.engine.search.locate.Location` records, best first.
        """

        coll = self.collection
        if not coll.segment_s:
            raise LocateError(f"{coll.root} stores one vector per file; locating an excerpt needs a segment collection "
                                "(index it with --segment SECONDS [--segment-hop SECONDS])")
        if (clip is None) == (waveform is None) or isinstance(clip, (list, tuple)) or isinstance(waveform, (list, tuple)):
            raise InvalidOptionError("locate takes one query: clip=PATH, or waveform= with sample_rate=")
        state = self._current()
        t = time.perf_counter()
        wave = self._load_clip(str(clip)) if clip is not None else self._prepare_waveform(waveform, sample_rate)
        wave = self._crop(wave, start_s, end_s)
        filters = Filters.make(label=label, path_prefix=path_prefix)
        # silence-aware segments of several sub-hop shifts vote together; offsets refined (engine/search/excerpt.py)
        return locate_excerpt(self, state, wave, filters=filters, top_m=int(top_m), max_files=max_files)

    # ------------------------------------------------------------------ internals
    def _queries(self, state: _State, *, clip, waveform, sample_rate, vector, id, start_s, end_s,
                 text=None) -> "_Queries":
        """The query vectors in index space, the files they come from, and their tags."""
        decode_ms = embed_ms = 0.0
        if text is not None:
            batch = not isinstance(text, str)
            texts = list(text) if batch else [text]
            t = time.perf_counter()
            Q = state.index.transform(self._text_vectors(texts))
            return _Queries(Q, [None] * len(texts), [()] * len(texts), batch, 0.0, (time.perf_counter() - t) * 1e3)
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
                    raise InvalidOptionError("waveform= needs sample_rate= (Hz)")
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
                raise InvalidOptionError(f"vector queries must have the collection's dimension {self.collection.dim} "
                                    f"(stored space, before post-processing); got shape {tuple(np.shape(vector))}")
            if not np.isfinite(v).all():
                raise InvalidOptionError("vector queries must be finite")
            return _Queries(state.index.transform(v), [None] * len(v), [()] * len(v), batch, 0.0, 0.0)
        batch = isinstance(id, (list, tuple, np.ndarray))
        ids = np.asarray([item_id(i, option="id") for i in (list(id) if batch else [id])], dtype=np.int64)
        pos = state.items.positions(ids)
        if (pos < 0).any():
            raise ItemNotFoundError(f"{self.collection.root} holds no item with id {int(ids[pos < 0][0])}")
        own = [state.items.paths[int(state.items.path_code[p])] for p in pos]
        tags = [self._stored_tags(state.items, int(p)) for p in pos]
        return _Queries(_stored(state, ids), own, tags, batch, 0.0, 0.0)

    def _text_vectors(self, texts: list[str]) -> np.ndarray:
        """Text queries in the stored space: the text encoder's vectors, pooled as one frame is pooled."""
        coll = self.collection
        capable = getattr(embedder_class(coll.embedder.name), "has_text_encoder", False)
        if capable is False or (coll.embedder.name == "hf" and not coll.embedder.version.startswith("clap/")):
            raise NoTextEncoderError(
                f"{coll.root} was embedded by {coll.embedder.name} {coll.embedder.version}, which has no text encoder, "
                "so it cannot be searched by text; index (or `audiosim reembed`) it with CLAP: --embedder hf "
                "--weights CLAP_SNAPSHOT_DIR (see docs/models.md)")
        embedder = self.embedder  # built (under the lock) before the lock is taken for the forward pass
        with self._embed_lock:
            vectors = embedder.embed_text(texts)
        return np.stack([np.asarray(coll.pooling(v[None, :]), dtype=np.float32) for v in vectors])

    def _load_clip(self, path: str) -> np.ndarray:
        return load_audio(path, sample_rate=self.embedder.info.sample_rate)

    def _prepare_waveform(self, waveform, sample_rate: int) -> np.ndarray:
        if sample_rate is None:
            raise InvalidOptionError("waveform= needs sample_rate= (Hz)")
        x = to_mono_float(np.asarray(waveform), source="waveform")
        return resample(x, orig_sr=int(sample_rate), target_sr=self.embedder.info.sample_rate)

    def _crop(self, wave: np.ndarray, start_s: float | None, end_s: float | None) -> np.ndarray:
        if start_s is None and end_s is None:
            return wave
        sr = self.embedder.info.sample_rate
        dur = wave.size / sr
        a = 0.0 if start_s is None else finite_number(start_s, option="start_s", min=0)
        b = dur if end_s is None else min(finite_number(end_s, option="end_s", min=0, min_open=True), dur)
        if a < 0 or b <= a or a >= dur:
            raise InvalidOptionError(f"the time range {a:g}-{b:g} s is empty or outside the query ({dur:.2f} s long)")
        return wave[int(round(a * sr)):int(round(b * sr))]

    def _embed(self, wave: np.ndarray, *, with_tags: bool = False) -> tuple[np.ndarray, tuple]:
        """The query's pooled vector (stored space) and, in a tag collection, its top tags."""
        if not with_tags:
            with self._embed_lock:
                frames, _ = self.embedder.embed_frames(wave)
            return self.pooler(frames), ()

        with self._embed_lock:
            frames, _, scores = self.embedder.embed_frames_with_scores(wave)
        vector = self.pooler(frames)  # tags from the frames pooled (not the padding), as ingest stores them
        return vector, tuple(self._state.class_map.describe(pool_scores(scores, [self.pooler.keep(frames)])[0]))

    def _tag_index(self, tag: str) -> int:
        cmap = self._state.class_map
        if cmap is None or _tag_arrays(self._state.items) is None:
            raise NoClassifierHeadError(f"{self.collection.root} stores no classifier tags (its embedder "
                                f"{self.collection.embedder.name!r} has no classifier head, or it was indexed before tags "
                                "existed); tag search needs a collection indexed with yamnet or panns")
        return cmap.resolve(tag)

    def _stored_tags(self, items: ItemTable, pos: int) -> tuple:
        if items.tag_ids is None:
            return ()

        names = self._state.class_map.names
        return tuple(Tag(names[i], i, s) for i, s in zip(items.tag_ids[pos].tolist(), items.tag_scores[pos].tolist())
                     if 0 <= i < len(names))

    def _hit(self, items: ItemTable, rank: int, score: float, pos: int, query_tags: tuple) -> Hit:
        it = self._item_at(items, pos)
        tags = self._stored_tags(items, pos)
        return Hit(rank=rank, score=float(score), id=it.id, path=it.path, label=it.label, offset_s=it.offset_s,
                   duration_s=it.duration_s, tags=tags, shared_tags=tuple(shared_tags(query_tags, tags)) if tags else ())

    def _cached_mask(self, state: _State, filters: Filters, tag_index: int | None) -> np.ndarray | None:
        """:meth:`_allowed` for the loaded revision, computed once per filter (the last :data:`MASK_CACHE` kept)."""
        key = _mask_key(filters, tag_index)
        mask = state.masks.get(key)
        if mask is None:
            mask = self._allowed(state.items, filters, tag_index)
            if mask is not None:
                mask.setflags(write=False)
            if len(state.masks) >= MASK_CACHE:
                state.masks.pop(next(iter(state.masks)), None)
            state.masks[key] = mask
        return mask

    def _allowed(self, items: ItemTable, filters: Filters, tag_index: int | None = None) -> np.ndarray | None:
        """Boolean mask of the rows the filters allow (None: all)."""
        if not filters.restricts and tag_index is None:
            return None
        mask = np.ones(len(items), dtype=bool)
        if filters.label is not None:
            codes = [i for i, name in enumerate(items.labels) if name in set(filters.label)]
            mask &= np.isin(items.label_code, codes)
        if filters.path_prefix is not None:
            under = np.fromiter((is_under(p, filters.path_prefix) for p in items.paths), dtype=bool, count=len(items.paths))
            mask &= under[items.path_code] if under.size else False
        if filters.min_duration_s is not None:
            mask &= items.duration_s >= finite_number(filters.min_duration_s, option="min_duration_s", min=0)
        if filters.max_duration_s is not None:
            mask &= items.duration_s <= finite_number(filters.max_duration_s, option="max_duration_s", min=0)
        if tag_index is not None:
            mask &= has_tag(*_tag_arrays(items), tag_index)
        return mask

    def _rank_by_tag(self, state: _State, tag_index: int, k: int | None, filters: Filters) -> list[Hit]:
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
        base = self._cached_mask(state, filters, tag_index)
        mask_key = _mask_key(filters, tag_index)
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
            else:  # the planner: exact over the allowed rows, or a widened ANN search (engine/search/planner.py)
                scores, ids, _ = search_filtered(vindex, q, max(k, MIN_CANDIDATES), mask=mask, ids=items.ids,
                                                 fetch=state.index.fetch, cache=state.gathered if mask is base else None,
                                                 cache_key=mask_key)
            keep = ids >= 0
            scores, ids = scores[keep][:k], ids[keep][:k]
            qtags = query_tags[n] if query_tags is not None else ()
            out.append(self._hits(items, scores, ids, qtags))
        return out

    def _hits(self, items: ItemTable, scores: np.ndarray, ids: np.ndarray, query_tags: tuple, *,
              pos: np.ndarray | None = None) -> list[Hit]:
        """The hits of one query, their metadata gathered with one vectorised lookup (O(k log n); ``pos``: the rows
        of ``ids`` when the caller knows them)."""
        if pos is None:
            pos = items.positions(ids)
        if items.tag_ids is not None:
            return [self._hit(items, rank, s, int(p), query_tags) for rank, (s, p) in enumerate(zip(scores, pos), 1)]
        paths, labels = items.paths, items.labels
        new, hits = object.__new__, []
        for r, (s, i, pc, lc, off, dur) in enumerate(zip(scores.tolist(), ids.tolist(), items.path_code[pos].tolist(),
                                                          items.label_code[pos].tolist(), items.offset_s[pos].tolist(),
                                                          items.duration_s[pos].tolist()), 1):
            hit = new(Hit)  # no per-field frozen __init__: a search makes k of them
            hit.__dict__.update(rank=r, score=s, id=i, path=paths[pc], label=labels[lc] if lc >= 0 else None,
                                offset_s=off, duration_s=dur, tags=(), shared_tags=())
            hits.append(hit)
        return hits



def _mask_key(filters: Filters, tag_index: int | None) -> tuple:
    """What a filter's mask depends on: the key of the mask and gathered-vector caches of a loaded state."""
    return (filters.label, filters.path_prefix, filters.min_duration_s, filters.max_duration_s, tag_index)


def _stored(state: _State, ids: np.ndarray) -> np.ndarray:
    """The stored vectors of ``ids`` in index space, read exactly from the parts' vector files (O(k))."""
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
