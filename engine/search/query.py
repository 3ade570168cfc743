"""What a search asks and what it answers: :class:`Query`, :class:`Filters` and :class:`SearchResult`.

:meth:`audiosim.Searcher.search` takes a :class:`Query` (what to search with) and
:class:`Filters` (which items may come back), or the same fields as keywords
(``searcher.search(clip="dog.wav", k=5, label="dog")``), which :func:`split_fields` sorts
into the two. Both are checked when made, so a malformed search fails before any work.

A search answers one :class:`SearchResult` per query: a list, best first, of
:class:`audiosim.Hit` objects, or of :class:`audiosim.engine.search.regions.Region` objects
when the hits are grouped (``result.group`` is ``"region"`` or ``"file"``; see
:attr:`SearchResult.grouped`). A batch query (a list of clips, waveforms or ids, or a 2-D
vector array) answers a list of them, one per query, in order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from audiosim.errors import InvalidOptionError

QUERY_KINDS = ("clip", "waveform", "vector", "id", "text")


@dataclass(frozen=True, eq=False)
class Query:
    """What to search with: exactly one of ``clip``, ``waveform`` (with ``sample_rate``), ``vector``, ``id``,
    ``text`` (a description, in a collection embedded by CLAP's audio tower), or ``tag`` alone (rank the
    collection by a classifier class; with a query, ``tag`` keeps only the items carrying it). ``start_s``/``end_s`` select a time range of a clip or waveform."""

    clip: str | Path | Sequence[str | Path] | None = None
    waveform: Any = None
    sample_rate: int | None = None
    vector: Any = None
    id: int | Sequence[int] | None = None
    text: str | Sequence[str] | None = None
    tag: str | None = None
    start_s: float | None = None
    end_s: float | None = None

    def __post_init__(self) -> None:
        given = self.given
        if len(given) > 1 or (not given and self.tag is None):
            raise InvalidOptionError("give exactly one query: clip=, waveform= (with sample_rate=), vector=, id= or text= "
                                f"(or tag= alone to rank by a class; got {', '.join(given) or 'none'})")
        if (self.start_s is not None or self.end_s is not None) and self.kind not in ("clip", "waveform"):
            raise InvalidOptionError("start_s/end_s select a time range of a query clip or waveform, not of a vector, id, "
                                "text or tag")
        if self.text is not None:
            texts = [self.text] if isinstance(self.text, str) else list(self.text)
            if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
                raise InvalidOptionError("text= takes a non-empty description (or a list of them), e.g. 'a dog barking'")

    @property
    def given(self) -> list[str]:
        return [n for n in QUERY_KINDS if getattr(self, n) is not None]

    @property
    def kind(self) -> str:
        """``clip``, ``waveform``, ``vector``, ``id``, ``text``, or ``tag`` (a tag alone)."""
        given = self.given
        return given[0] if given else "tag"


@dataclass(frozen=True)
class Filters:
    """Which items a search may return (every filter given must hold)."""

    label: tuple[str, ...] | None = None
    path_prefix: str | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    exclude_same_file: bool = False

    @classmethod
    def make(cls, *, label=None, path_prefix=None, min_duration_s=None, max_duration_s=None,
             exclude_same_file=False) -> "Filters":
        """Filters from loose values: one label or several, a path prefix resolved to an absolute folder."""
        labels = None if label is None else ((label,) if isinstance(label, str) else tuple(label))
        prefix = None if path_prefix in (None, "") else str(Path(path_prefix).expanduser().resolve())
        return cls(label=labels, path_prefix=prefix, min_duration_s=min_duration_s, max_duration_s=max_duration_s,
                   exclude_same_file=bool(exclude_same_file))

    @property
    def restricts(self) -> bool:
        return (self.label is not None or self.path_prefix is not None or self.min_duration_s is not None
                or self.max_duration_s is not None)


QUERY_FIELDS = frozenset(f.name for f in dataclasses.fields(Query))
FILTER_FIELDS = frozenset(f.name for f in dataclasses.fields(Filters))


def split_fields(query: Query | None, filters: Filters | None, fields: dict) -> tuple[Query, Filters]:
    """``(query, filters)`` from the objects given and/or keyword ``fields`` (keywords complete or override them)."""
    unknown = set(fields) - QUERY_FIELDS - FILTER_FIELDS
    if unknown:
        raise TypeError(f"search() got unexpected keyword arguments {', '.join(sorted(unknown))}; it takes "
                        f"{', '.join(sorted(QUERY_FIELDS | FILTER_FIELDS | {'k', 'group', 'query', 'filters'}))}")
    q_fields = {n: v for n, v in fields.items() if n in QUERY_FIELDS}
    f_fields = {n: v for n, v in fields.items() if n in FILTER_FIELDS}
    if query is None:
        query = Query(**q_fields)
    elif q_fields:
        query = dataclasses.replace(query, **q_fields)
    if filters is None:
        filters = Filters.make(**f_fields)
    elif f_fields:
        filters = Filters.make(**{**{n: getattr(filters, n) for n in FILTER_FIELDS}, **f_fields})
    return query, filters


class SearchResult(list):
    """The results of one query, best first: :class:`audiosim.Hit` objects, or
    :class:`~audiosim.engine.search.regions.Region` objects when ``group`` is ``"region"`` or ``"file"``.

    A plain list in every other way (iterate, index, ``len``, compare with a list).
    """

    def __init__(self, results: Sequence = (), *, group: str = "none") -> None:
        super().__init__(results)
        self.group = group

    @property
    def grouped(self) -> bool:
        """True when the results are regions (hits of one file merged), False when they are single hits."""
        return self.group != "none"

    def __repr__(self) -> str:
        return f"SearchResult({list.__repr__(self)}, group={self.group!r})"
