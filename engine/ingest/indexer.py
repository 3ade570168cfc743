"""Index a folder: the use case behind ``audiosim index`` and :func:`audiosim.index_folder`.

One call brings a collection up to date with a folder, holding the collection's writer lock
for the whole run (ingest, prune, relabel, post-processing, index rebuild):

1. **Options.** A new collection takes the given options (defaults: ``yamnet``, ``mu``,
   ``cosine``, one vector per file). An existing collection keeps its own: an omitted option
   takes the collection's value, a conflicting one is a :class:`CollectionMismatchError` that
   names the fix.
2. **Scan.** Every audio file under the folder (recursive, sorted), labelled by its parent
   folder (``label_from="parent"``) or not at all, then optionally by a labels CSV. Broken
   symbolic links are reported, not silently skipped.
3. **Diff by content hash.** Unchanged files are skipped (a new label is applied without
   re-embedding), changed files re-embedded (their old vectors replaced in the same commit),
   new files embedded; with ``prune`` the vectors of files under the folder that no longer
   exist are dropped (the folder and its sub-folders, by path component). A changed file that
   now fails to decode loses its old vectors: they no longer describe the file.
4. **Embed** through the one pipeline (:mod:`audiosim.engine.ingest.pipeline`), committing a part
   every ``flush_every`` files, so an interrupted run resumes where it stopped. Where it runs
   is the ``engine``:

   * ``"local"`` -- this machine. With ``processes="auto"`` (the default) the files are hashed,
     decoded and embedded by one worker process per usable core, each loading the model once
     (:class:`audiosim.engine.ingest.pipeline.ProcessStage`), when the embedder runs on the CPU and at
     least :data:`AUTO_PROCESS_MIN_FILES` files are to be embedded; otherwise (or with
     ``processes=0``) reader threads decode ahead and this process embeds. Both give the same
     vectors in the same id order.
   * ``"ray"`` -- an actor pool on a Ray cluster (:mod:`audiosim.engine.ingest.ray_engine`): one shard
     of ``flush_every`` files per committed part, committed by this process as shards finish.

   Every engine embeds only what the diff of step 3 left to do, so every engine resumes and
   updates incrementally in the same way.
5. **Compact.** When the run leaves more than
   :data:`audiosim.engine.store.compaction.AUTO_COMPACT_PARTS` parts, small parts are merged
   (:func:`audiosim.engine.store.compaction.maybe_compact`; ids, vectors and metadata unchanged, the
   revision kept). It runs before the index step, whose commit removes the merged parts' files.
6. **Index.** Post-processing is refitted and the index rebuilt for the final revision
   (:func:`audiosim.engine.store.indexing.ensure_index`); per-file failures go to ``errors.jsonl``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from audiosim.engine.audio.decode import DEFAULT_MAX_DURATION_S
from audiosim.engine.audio.scan import scan_folder
from audiosim.engine.ingest.mappers import EmbedMapper
from audiosim.engine.ingest.options import AUTO, IndexOptions, parse_processes
from audiosim.engine.ingest.pipeline import CollectionSink, FileItem, ProcessStage, failure, run_pipeline, usable_cores
from audiosim.engine.ingest.ray_engine import RayOptions, RayStage, import_ray
from audiosim.engine.models.embedders import make_embedder
from audiosim.engine.models.embedders.base import EmbedderInfo
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.engine.store.compaction import maybe_compact
from audiosim.engine.store.indexing import ensure_index
from audiosim.engine.store.labels import LabelReport, LabelSource, relabel_from_csv
from audiosim.engine.store.store import CollectionStore
from audiosim.errors import AudiosimError, CollectionMismatchError, IngestFailuresError, InvalidOptionError
from audiosim.files import is_under, sha256_file
from audiosim.indexes.postprocess import canonical_spec

DEFAULTS = {"embedder": "yamnet", "pooling": "mu", "metric": "cosine"}
# New collections leave digital silence out of pooling (padding decided the ranking: ESC-50 P@1 in
# docs/benchmarks-silence.md); --keep-silence keeps it; existing collections keep their own setting.
DEFAULT_SKIP_SILENCE = True
AUTO_PROCESS_MIN_FILES = 128  # below this, starting worker processes (~1-2 s each) costs more than it saves


@dataclass(frozen=True)
class MapperRecipe:
    """How to build a run's :class:`EmbedMapper` in another process or on another machine (picklable).

    Calling it loads the embedder (``make_embedder(embedder, weights=, device=, options=)``) and
    checks that it is the model the collection records (``expect``: name, version, weights
    sha256, sample rate, dim, window, hop), so a worker that resolved other weights refuses to
    embed instead of storing vectors of another model.
    """

    embedder: str
    pooling: PoolingSpec
    options: dict = field(default_factory=dict)
    weights: str | None = None
    device: str | None = None
    segment_s: float | None = None
    segment_hop_s: float | None = None
    frames: bool = False
    tags: bool = False
    expect: EmbedderInfo | None = None

    def __call__(self) -> EmbedMapper:
        model = make_embedder(self.embedder, weights=self.weights, device=self.device, options=self.options)
        if self.expect is not None and model.info != self.expect:
            raise CollectionMismatchError(
                f"this worker loaded {model.info} but the collection's vectors come from {self.expect}; give every "
                "worker the same weights (--weights PATH on a shared file system, or the same $AUDIOSIM_MODELS)")
        return EmbedMapper(model, self.pooling, segment_s=self.segment_s, segment_hop_s=self.segment_hop_s,
                           frames=self.frames, tags=self.tags)


def auto_processes(processes: int | str, *, files: int, device: str | None = None) -> int:
    """Worker processes for a local run: ``"auto"`` -> one per usable core when that pays, else 0 (threads)."""
    processes = parse_processes(processes)
    if processes == AUTO:
        cores = usable_cores()
        cpu = device is None or str(device).startswith("cpu")
        return min(cores, files) if (cpu and cores >= 2 and files >= AUTO_PROCESS_MIN_FILES) else 0
    return min(processes, files)


@dataclass
class IngestReport:
    """What :func:`index_folder` did. ``to_dict`` gives the JSON the CLI prints."""

    scanned: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    embedded: int = 0
    vectors_added: int = 0
    pruned_files: int = 0
    relabelled: int = 0
    failures: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # broken links and other unreadable directory entries
    seconds: float = 0.0
    audio_seconds: float = 0.0
    collection: str = ""
    vectors: int = 0
    labels: LabelReport | None = None  # what a labels CSV matched
    engine: str = ""  # where the files were embedded, e.g. "local (2 processes)", "ray (2 actors)"
    parts: int = 0  # parts the manifest names after the run
    compaction: dict | None = None  # what automatic compaction did, when it ran
    deleted_skipped: int = 0  # files under the folder deleted from the collection, left out (undelete brings them back)
    undeleted: int = 0  # deleted files embedded again by include_deleted

    @property
    def clips_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("failures", "skipped", "labels", "compaction")}
        d.update(failed=len(self.failures), clips_per_s=round(self.clips_per_s, 2), failures=self.failures)
        if self.skipped:
            d["skipped"] = self.skipped
        if self.labels is not None:
            d["labels"] = self.labels.to_dict()
        if self.compaction is not None:
            d["compaction"] = self.compaction
        return d




def _resolve_options(existing: CollectionStore | None, *, embedder, pooling, metric, segment_s, segment_hop_s, where: str,
                     skip_silence: bool | None = None):
    """The run's (embedder, pooling, metric, segment_s, segment_hop_s): given, else the collection's, else defaults."""

    if pooling is None and (skip_silence is not None or existing is None):  # the pooling's name stays
        pooling = existing.pooling.name if existing is not None else DEFAULTS["pooling"]
    if skip_silence is None:  # omitted: the collection's own setting (a new one leaves silence out)
        skip_silence = existing.pooling.skip_silence if existing is not None else DEFAULT_SKIP_SILENCE
    spec = PoolingSpec.parse(pooling, skip_silence=skip_silence) if pooling is not None else None
    if segment_s is not None and not segment_s > 0:
        raise InvalidOptionError(f"segment length must be positive seconds, got {segment_s}")
    if segment_hop_s is not None:
        if segment_s is None and (existing is None or existing.segment_s is None):
            raise InvalidOptionError("a segment hop needs a segment length (--segment SECONDS)")
        seg = segment_s if segment_s is not None else existing.segment_s
        if not 0 < segment_hop_s <= seg:
            raise InvalidOptionError(f"segment hop must be in (0, segment length {seg}], got {segment_hop_s}")
    if existing is None:
        return (embedder or DEFAULTS["embedder"], spec or PoolingSpec.parse(DEFAULTS["pooling"]),
                metric or DEFAULTS["metric"], segment_s, segment_hop_s if segment_hop_s is not None else None)
    m = existing.manifest
    conflicts = []

    def differs(option: str, given, have, shown):
        if given is not None and given != have:
            conflicts.append(f"{option} {shown(given)} (it uses {shown(have)})")

    differs("--embedder", embedder, m.embedder.name, str)
    differs("--pooling", spec, m.pooling, lambda p: p.describe())
    differs("--metric", metric, m.metric, str)
    differs("--segment", segment_s, m.segment_s, lambda s: "none" if s is None else f"{s:g}")
    hop_have = m.segment_hop_s if m.segment_hop_s is not None else m.segment_s
    differs("--segment-hop", segment_hop_s, hop_have, lambda s: "none" if s is None else f"{s:g}")
    if conflicts:
        raise CollectionMismatchError(
            f"{where} already exists with other settings: " + "; ".join(conflicts)
            + ". Omit these options to use the collection's own, or index into a new --collection directory."
        )
    return m.embedder.name, m.pooling, m.metric, m.segment_s, m.segment_hop_s


def _hash_stored(items: Sequence[FileItem], workers: int) -> list[str | Exception]:
    def h(item: FileItem):
        try:
            return sha256_file(item.path)
        except OSError as e:
            return AudiosimError(f"cannot read {item.path}: {e.strerror or e}")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(h, items))


def index_folder(folder: str | Path, collection: str | Path, *, options: IndexOptions | None = None,
                 **overrides) -> IngestReport:
    """Bring ``collection`` up to date with the audio under ``folder``; see the module docstring.

    The options are an :class:`~audiosim.engine.ingest.options.IndexOptions` (``options``, default
    ``IndexOptions()``) with ``overrides`` applied, e.g. ``index_folder(folder, coll,
    embedder="logmel", flush_every=8)``; every value is checked before any work.

    ``labels``: a CSV (``path``/``filename``/``file`` column and ``label_column``) matched by
    file name without extension. ``skip_silence``: pool only the frames that are not the
    embedder's digital-silence frame (``None``: the collection's setting; new collections leave silence out). ``postprocess``: a label-free spec (``"none"`` removes it).
    ``workers``: decoding threads (and hashing threads of the diff); ``processes``: worker
    processes that decode and embed (``"auto"``, or 0 to embed in this process).
    ``engine="ray"``: embed on a Ray cluster at ``ray_address`` (default: the running one, else
    a local one) with ``num_actors`` actors (default: one per CPU of the cluster) holding
    ``gpus_per_actor`` GPUs each. ``compact``: merge small parts after embedding when there are
    more than :data:`audiosim.engine.store.compaction.AUTO_COMPACT_PARTS`. ``max_duration_s``: a file
    whose header claims a longer recording is refused before any allocation (``None``: no
    limit). ``wait``: seconds to wait for another writer (default 10).
    """

    t0 = time.perf_counter()
    o = (options or IndexOptions()).replace(**overrides) if overrides else (options or IndexOptions())
    embedder, pooling, metric, segment_s, segment_hop_s = o.embedder, o.pooling, o.metric, o.segment_s, o.segment_hop_s
    skip_silence, labels, label_column, label_from, prune = o.skip_silence, o.labels, o.label_column, o.label_from, o.prune
    weights, device, embedder_options, index_kind, index_params = (o.weights, o.device, o.embedder_options,
                                                                   o.index_kind, o.index_params)
    postprocess, workers, processes, engine, compact = o.postprocess, o.workers, o.processes, o.engine, o.compact
    flush_every, nan_policy, max_duration_s, progress, wait, on_file = (o.flush_every, o.nan_policy, o.max_duration_s,
                                                                        o.progress, o.wait, o.on_file)
    within = o.within
    if engine == "ray":
        import_ray()  # a missing extra fails before any work
        ray_options = RayOptions(address=o.ray_address, num_actors=o.num_actors, gpus_per_actor=o.gpus_per_actor,
                                 shard_files=flush_every)
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InvalidOptionError(f"{folder} is not a folder; give the folder of recordings to index")
    root = Path(collection).expanduser()
    existing = CollectionStore.open(root) if CollectionStore.exists(root) else None
    name, spec, metric, segment_s, segment_hop_s = _resolve_options(
        existing, embedder=embedder, pooling=pooling, metric=metric, segment_s=segment_s, segment_hop_s=segment_hop_s,
        where=str(root), skip_silence=skip_silence)
    post = canonical_spec(postprocess) if postprocess is not None else None
    options = dict(existing.manifest.embedder_options) if existing is not None else {}
    options.update(embedder_options or {})
    model = make_embedder(name, weights=weights, device=device, options=options)

    label_source = LabelSource.resolve(
        existing.manifest.label_sources.get(str(folder.resolve())) if existing is not None else None,
        label_from=label_from, csv=labels, column=label_column)  # given, else what this folder's runs recorded
    scan = scan_folder(folder, label_from=label_source.label_from, within=within)
    items = list(scan.items)
    report = IngestReport(scanned=len(items), skipped=list(scan.skipped))
    if label_source.csv is not None:
        items, report.labels = relabel_from_csv(items, label_source.csv, label_column=label_source.column)

    coll = existing or CollectionStore.create(root, embedder=model.info, embedder_options=model.options(), pooling=spec,
                                         metric=metric, segment_s=segment_s, segment_hop_s=segment_hop_s,
                                         index_kind=index_kind or "flat", index_params=index_params,
                                         class_names=model.class_names(), exist_ok=True, wait=wait)
    coll.check_compatible(embedder=model.info, pooling=spec)
    if coll.has_tags and model.class_map_sha256() != coll.manifest.class_map_sha256:
        raise CollectionMismatchError(
            f"{coll.root} stores tags of another class map than this {model.info.name} embedder's "
            f"(--option class_map=...); use the class map the collection was made with, or a new --collection")
    with coll.writer(wait=wait, purpose="index") as w:
        fields = {}
        source = str(folder.resolve())
        if source not in w.manifest.sources:
            fields["sources"] = (*w.manifest.sources, source)
        if index_kind is not None and index_kind != w.manifest.index_kind:
            fields["index_kind"] = index_kind
        if index_params is not None and index_params != w.manifest.index_params:
            fields["index_params"] = dict(index_params)
        if postprocess is not None and post != w.manifest.postprocess:
            fields["postprocess"] = post
        if w.manifest.label_sources.get(source) != label_source.to_dict():
            fields["label_sources"] = {**w.manifest.label_sources, source: label_source.to_dict()}
        deleted = set(w.manifest.deleted)
        back = {it.path for it in items if it.path in deleted}
        if back and o.include_deleted:  # embedded again below, and off the deleted list
            fields["deleted"] = tuple(p for p in w.manifest.deleted if p not in back)
            report.undeleted = len(back)
        elif back:  # deletes stick: `audiosim undelete` or include_deleted brings them back
            items = [it for it in items if it.path not in back]
            report.deleted_skipped = len(back)
        if fields:
            w.set_fields(**fields)

        if prune:
            present = {it.path for it in items}
            stored = w.collection.files()
            gone = [p for p in stored if _is_under(p, source) and p not in present]
            if gone:
                w.delete(i for p in gone for i in stored[p].ids)
                report.pruned_files = len(gone)
        tags = w.collection.has_tags
        mapper = EmbedMapper(model, spec, segment_s=w.manifest.segment_s, segment_hop_s=w.manifest.segment_hop_s,
                             tags=tags)
        recipe = MapperRecipe(embedder=name, pooling=spec, options=options,
                              weights=str(weights) if weights is not None else None, device=device,
                              segment_s=w.manifest.segment_s, segment_hop_s=w.manifest.segment_hop_s, tags=tags,
                              expect=model.info)
        if engine == "ray":
            stage = RayStage(recipe, options=ray_options)
        else:
            stage = None
        ingest_items(w, items, mapper, report=report, sample_rate=model.info.sample_rate, workers=workers,
                     flush_every=flush_every, nan_policy=nan_policy, max_duration_s=max_duration_s, progress=progress,
                     desc=f"embedding ({model.info.name})", on_file=on_file, stage=stage,
                     mapper_factory=recipe, processes=processes, device=device)
        if compact:  # before the index commit, which then removes the merged parts' files
            done = maybe_compact(w)
            report.compaction = done.to_dict() if done is not None else None
        ensure_index(w)  # none is saved below the vectors post-processing needs
        w.write_errors(report.failures)
        report.vectors = len(w.collection)
        report.parts = len(w.manifest.parts)
    report.collection = str(coll.root)
    report.seconds = time.perf_counter() - t0
    if o.strict and report.failures:
        n = len(report.failures)
        raise IngestFailuresError(
            f"{n} {'file' if n == 1 else 'files'} failed (listed in {coll.root / 'errors.jsonl'}); every other file is "
            "committed. Fix or remove them and run again (without --strict, failures do not change the exit code)",
            report)
    return report


def ingest_items(writer, items: Sequence[FileItem], mapper, *, report: IngestReport, sample_rate: int, workers: int = 2,
                 flush_every: int = 64, nan_policy: str = "error",
                 max_duration_s: float | None = DEFAULT_MAX_DURATION_S, progress: bool = False,
                 desc: str = "embedding", on_file: Callable[[FileItem], None] | None = None, stage=None,
                 mapper_factory: Callable[[], Callable] | None = None, processes: int | str = 0,
                 device: str | None = None) -> IngestReport:
    """Bring the writer's collection up to date with ``items`` (diff by content hash, relabel, embed, commit).

    Counts go into ``report`` (new, changed, unchanged, relabelled, embedded, failures, ...).
    Items whose path is stored are hashed first; unchanged ones are skipped (a new label is
    applied without re-embedding); new and changed ones run through the pipeline, changed ones
    replacing their old vectors in the same commit. A changed file that fails loses its old
    vectors.

    Where the files are embedded: ``stage`` when given (e.g. a Ray stage); else, when
    ``mapper_factory`` is given and ``processes`` (``"auto"`` or a number, see
    :func:`auto_processes`) comes to at least 1, worker processes; else ``mapper`` in this
    process with ``workers`` decoding threads.
    """
    todo, replacing = plan_ingest(writer, items, report=report, workers=workers)
    if stage is None and mapper_factory is not None:
        n = auto_processes(processes, files=len(todo), device=device)
        if n >= 1:
            stage = ProcessStage(mapper_factory, processes=n)
    if mapper is None and stage is None:
        raise InvalidOptionError("ingest_items needs a mapper, a mapper_factory or a stage")
    sink = CollectionSink(writer, flush_every=flush_every, replacing=replacing)
    try:
        stats = run_pipeline(todo, sample_rate=sample_rate, mapper=mapper, stage=stage, sink=sink, workers=workers,
                             nan_policy=nan_policy, max_duration_s=max_duration_s, progress=progress, desc=desc,
                             on_file=on_file)
        sink.flush()
    finally:
        report.vectors_added += sink.vectors_added
        report.engine = getattr(stage, "description", None) or (
            f"local ({stage.processes} processes)" if isinstance(stage, ProcessStage) else "local (threads)")
    report.embedded += stats.processed
    report.audio_seconds += stats.audio_seconds
    report.failures += stats.failures
    stale = [i for f in stats.failures if f["path"] in replacing for i in replacing[f["path"]]]
    if stale:  # the file changed and no longer decodes: its old vectors describe other bytes
        writer.delete(stale)
    return report


def plan_ingest(writer, items: Sequence[FileItem], *, report: IngestReport,
                workers: int = 2) -> tuple[list[FileItem], dict[str, tuple[int, ...]]]:
    """The diff by content hash: ``(files to embed, {changed path: its old ids})``; relabels unchanged files.

    Counts new, changed and unchanged files into ``report`` and applies new labels of unchanged
    files in one commit (no re-embedding). A stored file that cannot be read is a failure.
    """
    stored = writer.collection.files()
    known = [it for it in items if it.path in stored]
    hashes = dict(zip((it.path for it in known), _hash_stored(known, workers)))
    todo, replacing, relabel, relabel_files = [], {}, {}, 0
    for it in items:
        old = stored.get(it.path)
        if old is None:
            report.new += 1
            todo.append(it)
            continue
        sha = hashes[it.path]
        if isinstance(sha, Exception):
            report.failures.append(failure(it.path, sha))
            continue
        if sha == old.content_sha256:
            report.unchanged += 1
            if it.label is not None and it.label != old.label:
                relabel.update(dict.fromkeys(old.ids, it.label))
                relabel_files += 1
            continue
        report.changed += 1
        replacing[it.path] = old.ids
        todo.append(it)
    if relabel:  # relabelled counts files, as the labels line and scanned/new/changed do
        writer.set_labels(relabel)
        report.relabelled += relabel_files
    return todo, replacing


def _is_under(path: str, root: str) -> bool:
    return is_under(path, root)
