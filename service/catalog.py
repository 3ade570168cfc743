"""The collections a server answers for: one warm :class:`Searcher` each, plus metadata per revision.

:class:`ServedCollection` opens a collection once, builds its searcher (embedder, index and
item table loaded once) and runs one silent query so the first real request pays no model
start-up. The searcher re-reads the collection by itself when another process (``audiosim
index``) commits a new revision; the served metadata (label counts, sizes, the folders paths
are shown relative to) is rebuilt lazily, at most once per revision, under a lock.

Paths are shown relative to the folder they were indexed from (the collection's ``sources``,
longest match first); a path under no recorded source is shown relative to the common folder
of all the collection's files. Audio is only ever read from the path the collection recorded
for an item id: clients never name a file.

The collection's 2-D map (:meth:`ServedCollection.map`, computed by
:func:`audiosim.engine.search.atlas.collection_map`) is kept per revision and clusters choice: t-SNE
takes seconds (17 s for 4,000 points on the 2-core VM), so it runs once per collection at a time and
only again after a new revision. Above :data:`MAP_MAX_POINTS` vectors (``map_max_points``) the map is of a seeded random sample of
that many.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import audiosim
from audiosim.engine.audio.decode import is_audio_path
from audiosim.engine.models.tags import COUNT_MIN_SCORE, UnknownTagError, tag_counts
from audiosim.engine.search.atlas import CollectionMap, collection_map
from audiosim.errors import AudioDecodeError, AudioError
from audiosim.files import sha256_file
from audiosim.service.config import ServeConfig
from audiosim.service.errors import BadRequest, NotFound, UnknownTag, Unprocessable, UnsupportedMedia

log = logging.getLogger("audiosim.serve")
MAP_MAX_POINTS = 4000  # the served map's cap (PCA + t-SNE of 4,000 1,024-d vectors: 17 s on the 2-core VM)
MAP_CACHE_ENTRIES = 4  # maps kept per collection, all of the served revision (one per clusters choice)


@dataclass(frozen=True)
class ItemView:
    """One item as the API shows it."""

    id: int
    path: str  # absolute, as recorded; never sent to clients
    rel_path: str
    label: str | None
    offset_s: float
    duration_s: float
    content_sha256: str | None
    segment: bool

    @property
    def file_name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class Snapshot:
    """What the server shows of one revision of a collection."""

    revision: int
    size: int
    ids: np.ndarray  # sorted
    label_counts: tuple[tuple[str, int], ...]  # most frequent first
    unlabelled: int
    sources: tuple[str, ...]  # longest first
    fallback_root: str

    def has(self, item_id: int) -> bool:
        pos = int(np.searchsorted(self.ids, item_id))
        return pos < self.ids.size and int(self.ids[pos]) == item_id

    def relative(self, path: str) -> str:
        for src in self.sources:
            if path.startswith(src + os.sep):
                return path[len(src) + 1:].replace(os.sep, "/")
        if self.fallback_root and path.startswith(self.fallback_root + os.sep):
            return path[len(self.fallback_root) + 1:].replace(os.sep, "/")
        return Path(path).name

    def absolute_prefix(self, prefix: str) -> str:
        """The stored-path prefix a relative ``path_prefix`` filter stands for.

        With several indexed folders, the first (longest) one under which the prefix exists on disk.
        """
        roots = self.sources or ((self.fallback_root,) if self.fallback_root else ("/",))
        candidates = [os.path.join(root, prefix.strip("/")) for root in roots]
        return next((c for c in candidates if os.path.exists(c)), candidates[0])


def _snapshot(table, revision: int, sources) -> Snapshot:
    counts = np.bincount(table.label_code[table.label_code >= 0], minlength=len(table.labels))
    label_counts = tuple(sorted(((name, int(c)) for name, c in zip(table.labels, counts) if c),
                                key=lambda nc: (-nc[1], nc[0])))
    srcs = tuple(sorted((str(s).rstrip(os.sep) for s in sources), key=len, reverse=True))
    fallback = ""
    if table.paths:
        common = os.path.commonpath(list(table.paths))
        fallback = common if len(table.paths) > 1 else os.path.dirname(common)
    return Snapshot(revision=revision, size=len(table), ids=table.ids, label_counts=label_counts,
                    unlabelled=int((table.label_code < 0).sum()), sources=srcs, fallback_root=fallback)


class ServedCollection:
    """One collection under its URL ``name``: a warm searcher and per-revision metadata."""

    def __init__(self, name: str, root: str | Path, *, warm: bool = True, map_max_points: int = MAP_MAX_POINTS) -> None:
        self.name, self.root = name, Path(root)
        self.map_max_points = int(map_max_points)
        self.searcher = audiosim.open_collection(self.root).searcher()
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._by_content: tuple[int, dict[str, str]] | None = None  # (revision, content sha256 -> file)
        self._map_lock = threading.Lock()  # one map computed at a time; a second ask for it waits and reuses it
        self._maps: dict[tuple[int, int | None], CollectionMap] = {}  # (revision, clusters) -> map
        if warm:
            self.warm_up()

    @property
    def collection(self):
        return self.searcher.collection

    def warm_up(self) -> None:
        """Build the embedder and run one query of a second of faint noise, so the first real request pays no start-up.

        Noise, not zeros: a collection that leaves digital silence out of its pooling refuses an all-zero query.
        """
        self.searcher.warm()
        sr = int(self.collection.embedder.sample_rate)
        if len(self.searcher):
            faint = 1e-3 * np.random.default_rng(0).standard_normal(sr).astype(np.float32)
            self.searcher.search(waveform=faint, sample_rate=sr, k=1)

    def snapshot(self) -> Snapshot:
        """Metadata of the revision the searcher serves (reloading it first if another process committed)."""
        self.searcher.refresh()
        while True:
            table = self.searcher.items
            revision = self.searcher.revision
            if self.searcher.items is table:  # not reloaded in between: table and revision belong together
                break
        snap = self._snapshot
        if snap is not None and snap.revision == revision:
            return snap
        with self._lock:
            if self._snapshot is None or self._snapshot.revision != revision:
                self._snapshot = _snapshot(table, revision, self.collection.sources)
            return self._snapshot

    @property
    def segmented(self) -> bool:
        return self.collection.segment_s is not None

    def item(self, item_id: int) -> ItemView:
        snap = self.snapshot()
        if not snap.has(item_id):
            raise NotFound(f"collection {self.name!r} has no item {item_id}")
        it = self.searcher.item(item_id)
        return ItemView(id=int(it.id), path=str(it.path), rel_path=snap.relative(str(it.path)), label=it.label,
                        offset_s=float(it.offset_s), duration_s=float(it.duration_s),
                        content_sha256=it.content_sha256 or None, segment=self.segmented)

    def search(self, *, filters, **query) -> tuple[list, object, Snapshot]:
        """``search_timed`` with the API's filters; returns ``(hits, timing, snapshot)``.

        Ids of an id search must be in the snapshot (else :class:`NotFound`); a relative
        ``path_prefix`` is mapped to the stored paths.
        """
        snapshot = self.snapshot()
        if filters.tag:
            self.check_tag(filters.tag)
        if "id" in query:
            ids = query["id"] if isinstance(query["id"], list) else [query["id"]]
            unknown = [i for i in ids if not snapshot.has(int(i))]
            if unknown:
                raise NotFound(f"collection {self.name!r} has no item {unknown[0]}")
        kwargs = dict(k=filters.k, label=filters.label, min_duration_s=filters.min_duration_s,
                      max_duration_s=filters.max_duration_s, tag=filters.tag, group=filters.group)
        if filters.exclude_same_file:
            kwargs["exclude_same_file"] = True
        if filters.path_prefix:
            kwargs["path_prefix"] = snapshot.absolute_prefix(filters.path_prefix)
        hits, timing = self.searcher.search_timed(**query, **kwargs)
        return hits, timing, snapshot

    def check_tag(self, tag: str) -> None:
        """A :class:`BadRequest` (no tags stored) or :class:`UnknownTag` (with suggestions), in words for any client."""
        cmap = self.collection.class_map
        if cmap is None:
            raise BadRequest(f"collection {self.name!r} stores no classifier tags (it was indexed with "
                             f"{self.collection.embedder.name}); searching by tag needs a collection indexed with "
                             "yamnet or panns")
        try:
            cmap.resolve(tag)
        except UnknownTagError as e:
            hint = f"; did you mean {', '.join(repr(n) for n in e.suggestions)}?" if e.suggestions else ""
            raise UnknownTag(f"unknown tag {tag!r}{hint}. Tags are the classifier's class names (letter case does not "
                             f"matter); GET /api/collections/{self.name}/tags lists them", suggestions=e.suggestions) from None

    def tags(self, *, min_score: float = COUNT_MIN_SCORE) -> tuple[list[tuple[str, int]], tuple[str, ...]]:
        """The tags the served revision holds (most frequent first) and every class name; empty without tags."""
        cmap = self.collection.class_map
        if cmap is None:
            return [], ()
        self.snapshot()
        items = self.searcher.items
        if items.tag_ids is None:
            return [], cmap.names
        return tag_counts(items.tag_ids, items.tag_scores, cmap.names, min_score=min_score), cmap.names

    def same_file(self, path: str) -> str | None:
        """The collection file with exactly ``path``'s bytes (by content sha256, checked on disk now), or None."""
        snap = self.snapshot()
        with self._lock:
            if self._by_content is None or self._by_content[0] != snap.revision:
                items = self.searcher.items
                by_sha = {}
                for sha, code in zip(items.content_sha256, items.path_code.tolist()):
                    if sha:
                        by_sha.setdefault(sha, items.paths[code])
                self._by_content = (snap.revision, by_sha)
            by_sha = self._by_content[1]
        if not by_sha:
            return None
        sha = sha256_file(path)
        stored = by_sha.get(sha)
        if stored is None or not os.path.isfile(stored) or os.path.getsize(stored) != os.path.getsize(path):
            return None
        return stored if sha256_file(stored) == sha else None  # the file as it is now, not as it was indexed

    def map(self, *, clusters: int | None = None) -> tuple[CollectionMap | None, Snapshot]:
        """The served revision's 2-D map (None for an empty collection) and its snapshot; cached per revision."""
        snap = self.snapshot()
        if snap.size == 0:
            return None, snap
        key = (snap.revision, clusters)
        with self._map_lock:
            m = self._maps.get(key)
            if m is not None:
                return m, snap
            m = collection_map(self.collection, clusters=clusters, max_points=self.map_max_points)
            if self.collection.revision != snap.revision:  # another process committed meanwhile: answer, keep nothing
                return m, self.snapshot()
            kept = [(k, v) for k, v in self._maps.items() if k[0] == snap.revision][-(MAP_CACHE_ENTRIES - 1):]
            self._maps = dict(kept + [(key, m)])
            return m, snap

    def search_upload(self, fileobj, filename: str | None, *, filters, start_s=None, end_s=None):
        """:meth:`search` with an uploaded clip, copied to a temporary file so every format ``index`` reads works."""


        suffix = Path(filename or "").suffix.lower()
        suffix = suffix if suffix and is_audio_path(f"x{suffix}") else ".upload"
        shown = Path(filename or "the upload").name
        with tempfile.NamedTemporaryFile(prefix="audiosim-query-", suffix=suffix) as tmp:
            fileobj.seek(0)
            shutil.copyfileobj(fileobj, tmp, 1 << 20)
            tmp.flush()
            clip = tmp.name
            if filters.exclude_same_file:  # an upload of a collection file is that file: its own hits are skipped
                clip = self.same_file(tmp.name) or tmp.name
            try:
                return self.search(filters=filters, clip=clip, start_s=start_s, end_s=end_s)
            except AudioDecodeError:  # the library's message names the temporary file: say it about the upload
                raise UnsupportedMedia(f"{shown} is not audio that audiosim can read; send a recording in wav, flac, "
                                       "ogg, mp3, aiff or another common audio format") from None
            except AudioError as e:
                raise Unprocessable(f"{shown}: {str(e).replace(tmp.name, shown)}") from None


class Catalog:
    """Served collections by name."""

    def __init__(self, collections: dict[str, ServedCollection]) -> None:
        self._by_name = dict(collections)

    @classmethod
    def open(cls, config: ServeConfig) -> "Catalog":
        served = {}
        for name, root in config.collections:
            log.info("loading collection %s from %s", name, root)
            served[name] = ServedCollection(name, root, warm=config.warm)
        return cls(served)

    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> ServedCollection:
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFound(f"no collection named {name!r}; this server has: {', '.join(self._by_name) or 'none'}") from None

    def __iter__(self):
        return iter(self._by_name.values())
