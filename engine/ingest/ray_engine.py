"""Distributed ingest on Ray: an actor pool embeds shards of files, this process commits them.

``audiosim index FOLDER --collection C --engine ray`` (``index_folder(..., engine="ray")``) runs
the same ingest as the local engine -- the same scan, the same diff by content hash, the same
sink and the same index build -- with the embedding done on a Ray cluster:

1. **Shards.** The driver (the process running ``audiosim index``, holding the collection's
   writer lock) lists the folder and diffs it against the collection exactly as the local
   engine does (:func:`audiosim.engine.ingest.indexer.plan_ingest`): only new and changed files are
   sent. They are cut into shards of ``shard_files`` files (``--flush-every``, default 64) and
   handed to Ray Data as one row (paths, labels) and one block per shard (``from_items``);
   ``batch_size=1`` makes every shard one task. Actors return one row per file, tagged with
   its shard, so the driver knows when a shard is complete however Ray re-blocks the output.
2. **Actors.** ``map_batches`` with a fixed-size actor pool (``ActorPoolStrategy(size=N)``,
   ``num_gpus=G`` per actor) runs :class:`_EmbedActor`: each actor builds its mapper once from
   the run's :class:`audiosim.engine.ingest.indexer.MapperRecipe` -- the same
   :class:`audiosim.engine.ingest.mappers.EmbedMapper` the local engine uses, after checking that it
   loaded the model the collection records -- then hashes, decodes and embeds every file of
   the shards it gets with :func:`audiosim.engine.ingest.pipeline.decode_item` and
   :func:`audiosim.engine.ingest.pipeline.map_decoded`. So the vectors equal the local engine's, and a
   file that fails is a per-file failure record, never a failed task.
3. **Commits.** Actors return the rows (pickled :class:`Rows`, bit-exact) to the driver, which
   commits every finished shard as one part through the collection writer, in the order shards
   finish. Actors never write into the collection: the store's clean-up deletes files in
   ``parts/`` that no manifest names, and part ids are assigned at commit time. The cost is that
   every vector crosses the network once (4 kB per 1024-d vector); the driver's work per shard is
   one Parquet write.
4. **Failures.** Ray Data restarts an actor that dies and retries its shard (actor pools run
   with ``max_restarts=-1`` and ``max_task_retries=-1``). If the driver stops, the shards it
   committed stay; the next run's diff skips them (resumable per shard).

Running it on a cluster: every node needs audiosim (``pip install 'audiosim[ray]'``), the
recordings at the same path (a shared file system) and the model weights (``--weights`` on a
shared path, or ``$AUDIOSIM_MODELS`` on every node); start the driver on the head node with
``--ray-address auto``. Without an address a running Ray (``ray.is_initialized()``) is used,
else a local one is started for the run and stopped after it.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from audiosim import errors
from audiosim.engine.audio.decode import DEFAULT_MAX_DURATION_S
from audiosim.engine.ingest.pipeline import FileItem, Mapped, decode_item, map_decoded
from audiosim.errors import AudiosimError, InvalidOptionError, MissingDependencyError, WorkerError


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray ingest runs.

    ``address``: a Ray cluster (``auto``, ``ray://host:10001``, ``host:6379``); None: the Ray
    this process already started, else a local one. ``num_actors``: actors in the pool
    (default: the cluster's CPUs divided by ``cpus_per_actor``). ``gpus_per_actor``: GPUs each
    actor holds (fractions share a GPU). ``shard_files``: files per shard, i.e. per committed part.
    """

    address: str | None = None
    num_actors: int | None = None
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    shard_files: int = 64

    def __post_init__(self) -> None:
        if self.num_actors is not None and int(self.num_actors) < 1:
            raise InvalidOptionError(f"--num-actors must be at least 1, got {self.num_actors}")
        if not float(self.gpus_per_actor) >= 0:
            raise InvalidOptionError(f"--gpus-per-actor must be 0 or more, got {self.gpus_per_actor}")
        if not float(self.cpus_per_actor) > 0:
            raise InvalidOptionError(f"cpus_per_actor must be positive, got {self.cpus_per_actor}")
        if int(self.shard_files) < 1:
            raise InvalidOptionError(f"a shard needs at least 1 file, got {self.shard_files}")


def import_ray():
    """The ``ray`` module with Ray Data, or a :class:`MissingDependencyError` naming the extra."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise MissingDependencyError("the Ray engine needs Ray Data: pip install 'audiosim[ray]' "
                                     "(or 'ray[data]'), or index with --engine local") from e
    return ray


class RayStage:
    """A pipeline stage (see :mod:`audiosim.engine.ingest.pipeline`) that embeds on a Ray actor pool.

    Yields every file of a shard once the whole shard is back, shards in the order they finish,
    the last file of each shard marked ``shard_end`` (the :class:`CollectionSink` commits it).
    """

    def __init__(self, mapper_factory: Callable[[], Callable], *, options: RayOptions | None = None) -> None:
        self.mapper_factory = mapper_factory
        self.options = options or RayOptions()
        self.actors: int | None = None

    @property
    def description(self) -> str:
        n = self.actors or self.options.num_actors
        return f"ray ({n} actors)" if n else "ray"

    def __call__(self, items: Sequence[FileItem], *, sample_rate: int, nan_policy: str = "error",
                 max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> Iterator[Mapped]:
        ray = import_ray()
        if not items:
            return
        started = connect(ray, self.options.address)
        try:
            yield from self._run(ray, list(items), sample_rate=sample_rate, nan_policy=nan_policy,
                                 max_duration_s=max_duration_s)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, items: list[FileItem], *, sample_rate: int, nan_policy: str,
             max_duration_s: float | None) -> Iterator[Mapped]:
        o = self.options
        size = int(o.shard_files)
        shards = [range(start, min(start + size, len(items))) for start in range(0, len(items), size)]
        wanted = o.num_actors or max(1, int(ray.cluster_resources().get("CPU", 1) // o.cpus_per_actor))
        self.actors = min(wanted, len(shards))  # an actor without a shard would only load the model
        rows = [{"shard": k, "start": r.start, "paths": [items[i].path for i in r],
                 "labels": [items[i].label for i in r]} for k, r in enumerate(shards)]
        ctx = ray.data.DataContext.get_current()
        saved = ctx.enable_progress_bars, ctx.print_on_execution_start
        ctx.enable_progress_bars = ctx.print_on_execution_start = False  # the pipeline shows its own progress
        try:
            yield from self._stream(ray, items, shards, rows, sample_rate=sample_rate, nan_policy=nan_policy,
                                    max_duration_s=max_duration_s)
        finally:
            ctx.enable_progress_bars, ctx.print_on_execution_start = saved

    def _stream(self, ray, items, shards, rows, *, sample_rate: int, nan_policy: str,
                max_duration_s: float | None) -> Iterator[Mapped]:
        o = self.options
        ds = ray.data.from_items(rows, override_num_blocks=len(shards)).map_batches(
            _EmbedActor, batch_size=1, batch_format="pyarrow",
            fn_constructor_kwargs={"mapper_factory": self.mapper_factory, "sample_rate": int(sample_rate),
                                   "nan_policy": nan_policy, "max_duration_s": max_duration_s},
            compute=ray.data.ActorPoolStrategy(size=self.actors), num_cpus=o.cpus_per_actor,
            num_gpus=o.gpus_per_actor or None)
        waiting: dict[int, dict[int, Mapped]] = {}
        batches = _ray_errors(ray, ds.iter_batches(batch_size=None, batch_format="pyarrow"))
        try:
            for batch in batches:
                for row in batch.to_pylist():
                    k, seq = int(row["shard"]), int(row["seq"])
                    got = waiting.setdefault(k, {})
                    got[seq] = _mapped(items[seq], row)
                    if len(got) == len(shards[k]):
                        del waiting[k]
                        ordered = [got[i] for i in shards[k]]
                        yield from ordered[:-1]
                        yield _end_of_shard(ordered[-1])
        finally:
            batches.close()  # stops Ray Data's execution when the driver stops early
        if waiting:
            raise WorkerError(f"Ray returned {len(waiting)} incomplete shards; run the same command again "
                                "(the shards committed so far are kept)")


def connect(ray, address: str | None) -> bool:
    """Join the cluster at ``address`` (or the running Ray, or a new local one); True when this call started Ray."""
    if ray.is_initialized():
        return False

    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, configure_logging=True)
    except ConnectionError as e:
        raise WorkerError(f"cannot reach a Ray cluster at {address!r}: {e}; start one with `ray start --head` "
                            "or give --ray-address HOST:PORT") from None
    return True


def _ray_errors(ray, batches):
    """Iterate Ray's batches; an audiosim error raised on an actor (e.g. other weights) is raised here as itself."""


    iterator = iter(batches)
    try:
        yield from iterator
    except ray.exceptions.RayError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, AudiosimError):
            raise cause from None
        found = re.search(r"audiosim\.errors\.(\w+): (.+)", str(e))
        kind = getattr(errors, found.group(1), None) if found else None
        if isinstance(kind, type) and issubclass(kind, AudiosimError):
            raise kind(f"on a Ray actor: {found.group(2).strip()}") from None
        raise


def _mapped(item: FileItem, row: dict) -> Mapped:
    result = pickle.loads(row["rows"]) if row["rows"] is not None else None
    fail = json.loads(row["failure"]) if row["failure"] is not None else None
    return Mapped(item=item, sha256=row["sha256"], duration_s=float(row["duration_s"]), result=result, failure=fail)


def _end_of_shard(m: Mapped) -> Mapped:
    return Mapped(item=m.item, sha256=m.sha256, duration_s=m.duration_s, result=m.result, failure=m.failure,
                  shard_end=True)


class _EmbedActor:
    """A Ray Data actor: builds the mapper once, then maps each batch of shards (``shard, start, paths, labels``)."""

    def __init__(self, *, mapper_factory, sample_rate: int, nan_policy: str, max_duration_s: float | None) -> None:
        self.mapper = mapper_factory()
        self.sample_rate, self.nan_policy, self.max_duration_s = sample_rate, nan_policy, max_duration_s

    def __call__(self, batch):
        import pyarrow as pa


        out = {"shard": [], "seq": [], "sha256": [], "duration_s": [], "rows": [], "failure": []}
        files = [(shard, start + j, path, label)
                 for shard, start, paths, labels in zip(*(batch[c].to_pylist() for c in ("shard", "start", "paths", "labels")))
                 for j, (path, label) in enumerate(zip(paths, labels))]
        for shard, seq, path, label in files:
            m = map_decoded(self.mapper, decode_item(FileItem(path=path, label=label), sample_rate=self.sample_rate,
                                                     nan_policy=self.nan_policy, max_duration_s=self.max_duration_s))
            out["shard"].append(shard)
            out["seq"].append(seq)
            out["sha256"].append(m.sha256)
            out["duration_s"].append(float(m.duration_s))
            out["rows"].append(pickle.dumps(m.result, protocol=pickle.HIGHEST_PROTOCOL) if m.failure is None else None)
            out["failure"].append(json.dumps(m.failure) if m.failure is not None else None)
        return pa.table({"shard": pa.array(out["shard"], pa.int64()), "seq": pa.array(out["seq"], pa.int64()),
                         "sha256": pa.array(out["sha256"], pa.string()),
                         "duration_s": pa.array(out["duration_s"], pa.float64()),
                         "rows": pa.array(out["rows"], pa.binary()), "failure": pa.array(out["failure"], pa.string())})
