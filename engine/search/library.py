"""The collection the Python API hands out: the store's :class:`~audiosim.engine.store.store.CollectionStore` plus searching.

:func:`open_collection` returns a :class:`Collection` that adds to the store's reading and
writing what a library user expects of a collection: :meth:`Collection.searcher` (a warm
:class:`~audiosim.engine.search.searcher.Searcher`) and :meth:`Collection.delete` by id or by file, which
keeps the saved index current in the same locked session. The store itself knows nothing of
searching or indexing; this module joins them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from audiosim.engine.search.dedup import DEFAULT_MUTUAL, DEFAULT_THRESHOLD, find_duplicates
from audiosim.engine.search.searcher import Searcher
from audiosim.engine.store import store
from audiosim.engine.store.indexing import ensure_index
from audiosim.errors import CollectionError, ItemNotFoundError
from audiosim.values import item_id


class Collection(store.CollectionStore):
    """A collection directory (see :mod:`audiosim.engine.store.store`), searchable and editable from Python."""

    def searcher(self, **embedder_options):
        """A warm :class:`audiosim.engine.search.searcher.Searcher` over this collection (``weights=``, ``device=``, options)."""

        return Searcher(self, **embedder_options)

    def duplicates(self, *, threshold: float = DEFAULT_THRESHOLD, k: int = 10, device: str = "auto",
                   mutual: int | None = DEFAULT_MUTUAL, verify: bool = True):
        """Identical files (stored sha256), near-duplicate groups (candidates from the vectors, checked on
        their audio unless ``verify=False``) and, in segment collections, duplicated stretches
        (:mod:`audiosim.engine.search.dedup`)."""

        return find_duplicates(self, threshold=threshold, k=k, device=device, mutual=mutual, verify=verify)

    def delete(self, *, ids: Iterable[int] | None = None, paths: Iterable[str] | None = None,
               wait: float | None = None, missing_ok: bool = False) -> int:
        """Drop vectors by id and/or by file path (every vector of that file); returns how many were removed.

        An id or a file the collection does not hold is an :class:`~audiosim.errors.ItemNotFoundError`
        naming it, and nothing is deleted; ``missing_ok=True`` deletes the rest instead (:meth:`missing`
        says beforehand what is not there), so a retried delete succeeds.

        The saved index is brought up to date in the same locked session, so searches reflect it.
        A file whose every vector is removed is remembered as deleted: later ``index`` runs of its
        folder leave it out until :meth:`undelete` (or ``include_deleted=True``). The audio files
        themselves are never touched.
        """

        if ids is None and paths is None:
            raise CollectionError("delete needs ids= or paths=")
        with self.writer(wait=wait, purpose="delete") as w:
            ids, paths = [item_id(i, option="id") for i in (ids or ())], list(paths or ())
            lost_ids, lost_paths = missing_items(w.collection, ids=ids, paths=paths)
            if (lost_ids or lost_paths) and not missing_ok:
                raise ItemNotFoundError(_missing_message(w.collection, lost_ids, lost_paths))
            doomed = (set(ids) - set(lost_ids)) | set(w.ids_of_paths([p for p in paths if p not in set(lost_paths)]))
            gone = [p for p, f in w.collection.files().items() if doomed.issuperset(int(i) for i in f.ids)]
            removed = w.delete(doomed, forget=gone)
            if removed:
                ensure_index(w)
            return removed

    @property
    def deleted(self) -> tuple[str, ...]:
        """Files deleted from the collection that ``index`` leaves out (see :meth:`undelete`)."""
        return self.manifest.deleted

    def undelete(self, *, paths: Iterable[str] | None = None, wait: float | None = None) -> list[str]:
        """Let the next ``index`` run embed these deleted files again (``paths=None``: every deleted file).

        Returns the paths taken off the deleted list; a path that is not on it is an error naming the list.
        """

        with self.writer(wait=wait, purpose="undelete") as w:
            listed = w.manifest.deleted
            if paths is None:
                chosen = list(listed)
            else:
                chosen, unknown = [], []
                for p in paths:
                    key = p if p in listed else str(Path(p).expanduser().resolve())
                    (chosen if key in listed else unknown).append(key if key in listed else p)
                if unknown:
                    raise CollectionError(
                        f"{unknown[0]!r} is not among the {len(listed)} deleted files of {self.root} "
                        f"(`audiosim info --collection {self.root} --deleted` lists them)")
            if chosen:
                w.set_fields(deleted=tuple(p for p in listed if p not in set(chosen)))
            return chosen


def missing_items(collection: store.Collection, *, ids: Iterable[int] | None = None,
                  paths: Iterable[str] | None = None) -> tuple[list[int], list[str]]:
    """The ids and audio files among ``ids`` / ``paths`` that ``collection`` does not hold, in the order given."""

    want = [item_id(i, option="id") for i in (ids or ())]
    lost_ids = []
    if want:
        pos = collection.items().positions(np.asarray(want, dtype=np.int64))
        lost_ids = [i for i, p in zip(want, pos) if p < 0]
    paths = list(paths or ())
    stored = collection.files() if paths else {}
    lost_paths = [p for p in paths if p not in stored and str(Path(p).expanduser().resolve()) not in stored]
    return list(dict.fromkeys(lost_ids)), list(dict.fromkeys(lost_paths))


def _missing_message(collection: store.Collection, ids: list[int], paths: list[str]) -> str:
    if paths:
        what = store.unknown_file_message(collection.root, paths[0], collection.files())
        what += f" (and {len(paths) - 1} more files)" if len(paths) > 1 else ""
        what += f"; nor items with id {', '.join(map(str, ids[:5]))}" if ids else ""
    else:
        shown = ", ".join(map(str, ids[:5])) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        what = f"{collection.root} holds no item with id {shown}"
    return (f"{what}; nothing was deleted. Pass --missing-ok (missing_ok=True) to delete the rest and report "
            "what is missing")


def open_collection(path: str | Path) -> Collection:
    """Open an existing collection (see :class:`Collection`)."""
    return Collection.open(path)
