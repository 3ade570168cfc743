"""The options of :func:`audiosim.index_folder`, as one frozen value checked when it is made.

``IndexOptions()`` holds the defaults; ``IndexOptions(embedder="logmel", flush_every=8)`` or
``options.replace(prune=True)`` give others. Every field is checked in ``__post_init__``, so a
malformed option fails before any work, with a message that names the fix, wherever the value
came from (the CLI's flags, the service, a Python call). ``None`` in ``embedder``, ``pooling``,
``metric``, ``segment_s``, ``segment_hop_s``, ``skip_silence``, ``index_kind`` and
``postprocess`` means "the collection's own setting" (or the default for a new collection).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from audiosim.engine.audio.decode import DEFAULT_MAX_DURATION_S
from audiosim.engine.audio.scan import FileItem
from audiosim.errors import InvalidOptionError
from audiosim.indexes.kinds import check_kind
from audiosim.indexes.vectors import Metric

ENGINES = ("local", "ray")
AUTO = "auto"


def parse_processes(value: int | str, *, option: str = "processes") -> int | str:
    """``"auto"`` or a number of worker processes (0: embed in this process), from an int or text."""
    if value == AUTO:
        return AUTO
    try:
        n = int(value)
        if isinstance(value, float) and n != value:
            raise ValueError
    except (TypeError, ValueError):
        n = -1
    if isinstance(value, bool) or n < 0:
        raise InvalidOptionError(f"{option} must be 'auto' or a number of worker processes (0: embed in this process), "
                                 f"got {value!r}")
    return n


@dataclass(frozen=True)
class IndexOptions:
    """How :func:`audiosim.index_folder` indexes a folder (see that function for each option's meaning)."""

    embedder: str | None = None
    pooling: str | None = None
    metric: Metric | str | None = None  # parsed to a Metric when made
    segment_s: float | None = None
    segment_hop_s: float | None = None
    skip_silence: bool | None = None
    labels: str | Path | None = None
    label_column: str = "label"
    label_from: str | None = None  # None: what the folder's earlier runs recorded, else "parent"
    prune: bool = False
    within: str | Path | None = None  # leave out files whose real path is outside this folder (symlinks out of it)
    include_deleted: bool = False  # embed files deleted from the collection again (else they stay out)
    strict: bool = False  # raise IngestFailuresError after the run when any file failed (the rest is committed)
    weights: str | Path | None = None
    device: str | None = None
    embedder_options: dict | None = None
    index_kind: str | None = None
    index_params: dict | None = None
    postprocess: str | None = None
    workers: int = 2
    processes: int | str = AUTO
    engine: str = "local"
    ray_address: str | None = None
    num_actors: int | None = None
    gpus_per_actor: float = 0.0
    compact: bool = True
    flush_every: int = 64
    nan_policy: str = "error"
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S
    progress: bool = False
    wait: float | None = None
    on_file: Callable[[FileItem], None] | None = None

    def __post_init__(self) -> None:
        def set_(name, value):
            object.__setattr__(self, name, value)

        set_("processes", parse_processes(self.processes))
        if self.metric is not None:
            set_("metric", Metric.parse(self.metric))
        if _int(self.flush_every) < 1:
            raise InvalidOptionError(f"--flush-every must be at least 1 (files per committed part), got {self.flush_every}")
        if _int(self.workers) < 1:
            raise InvalidOptionError(f"--workers must be at least 1, got {self.workers}")
        set_("flush_every", int(self.flush_every))
        set_("workers", int(self.workers))
        if self.engine not in ENGINES:
            raise InvalidOptionError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.index_kind is not None:  # an unknown kind, or parameters it does not take (no index is built)
            check_kind(self.index_kind, self.index_params)

    def replace(self, **changes) -> "IndexOptions":
        """A copy with ``changes`` applied (and checked); an unknown name is a ``TypeError``."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
