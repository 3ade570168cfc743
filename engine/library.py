"""The collection the Python API hands out: the store's :class:`~audiosim.engine.store.Collection` plus searching.

:func:`open_collection` returns a :class:`Collection` that adds to the store's reading and
writing what a library user expects of a collection: :meth:`Collection.searcher` (a warm
:class:`~audiosim.engine.search.Searcher`) and :meth:`Collection.delete` by id or by file, which
keeps the saved index current in the same locked session. The store itself knows nothing of
searching or indexing; this module joins them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from audiosim.engine import store
from audiosim.errors import CollectionError


class Collection(store.Collection):
    """A collection directory (see :mod:`audiosim.engine.store`), searchable and editable from Python."""

    def searcher(self, **embedder_options):
        """A warm :class:`audiosim.engine.search.Searcher` over this collection (``weights=``, ``device=``, options)."""
        from audiosim.engine.search import Searcher

        return Searcher(self, **embedder_options)

    def delete(self, *, ids: Iterable[int] | None = None, paths: Iterable[str] | None = None,
               wait: float | None = None) -> int:
        """Drop vectors by id and/or by file path (every vector of that file); returns how many were removed.

        The saved index is brought up to date in the same locked session, so searches reflect it.
        The audio files themselves are never touched.
        """
        from audiosim.engine.indexing import ensure_index

        if ids is None and paths is None:
            raise CollectionError("delete needs ids= or paths=")
        with self.writer(wait=wait, purpose="delete") as w:
            doomed = {int(i) for i in (ids or ())} | set(w.ids_of_paths(paths or ()))
            removed = w.delete(doomed)
            if removed:
                ensure_index(w)
            return removed


def open_collection(path: str | Path) -> Collection:
    """Open an existing collection (see :class:`Collection`)."""
    return Collection.open(path)
