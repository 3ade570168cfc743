"""Re-embed a collection with another model: the use case behind ``audiosim reembed``.

The new collection keeps every stored row's id, path, content hash, offset, duration and label;
only the vectors change. Each recorded source file is decoded again at the new model's sample
rate and embedded the way ingest embeds it (the same segments, the same pooling unless another
is given); a stored row whose segment the new model's pass does not produce (a segment the new
model hears as silence, say) is embedded from its own time range. A file whose bytes no longer
hash to the recorded ``content_sha256`` is not re-embedded: it is reported as a failure (its old
vectors describe other bytes), as is a file that cannot be read.

Resumable: rows are committed every ``flush_every`` files under the new collection's writer
lock, and a later run skips the ids already there, so a killed run continues where it stopped.
The new collection records the source collection in ``sources`` and builds its index when done.
Classifier tags are not carried over (the new model's classes differ).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiosim.engine.audio.scan import FileItem
from audiosim.engine.ingest.mappers import EmbedMapper
from audiosim.engine.ingest.pipeline import decode_item, failure
from audiosim.engine.models.embedders import make_embedder
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.engine.store.indexing import ensure_index
from audiosim.engine.store.store import CollectionStore, Rows
from audiosim.errors import AudioDecodeError, AudiosimError, CollectionMismatchError, InvalidOptionError

COLUMNS = ("id", "path", "content_sha256", "offset_s", "duration_s", "label")


@dataclass
class ReembedReport:
    source: str = ""
    collection: str = ""
    files: int = 0
    rows: int = 0
    already_done: int = 0  # rows a previous run had committed
    embedded_rows: int = 0
    fallback_rows: int = 0  # rows embedded from their own time range
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["failed"] = len(self.failures)
        return d


def _stored_rows(coll: CollectionStore) -> dict[str, list[dict]]:
    """The source's rows grouped by path, in id order."""
    table = coll.read_table(columns=list(COLUMNS))
    cols = {c: table[c].to_pylist() for c in COLUMNS}
    by_path: dict[str, list[dict]] = {}
    for i in np.argsort(np.asarray(cols["id"], dtype=np.int64), kind="stable"):
        row = {c: cols[c][i] for c in COLUMNS}
        by_path.setdefault(row["path"], []).append(row)
    return by_path


def reembed(source: str | Path, out: str | Path, *, embedder: str, weights=None, device: str | None = None,
            embedder_options: dict | None = None, pooling: str | None = None, flush_every: int = 32,
            progress: bool = False, wait: float | None = None) -> ReembedReport:
    """Write ``out``: ``source``'s rows embedded by ``embedder``; see the module docstring."""
    t0 = time.perf_counter()
    if int(flush_every) < 1:
        raise InvalidOptionError("flush_every must be >= 1")
    src = CollectionStore.open(source)
    root = Path(out).expanduser()
    if root.resolve() == src.root.resolve():
        raise InvalidOptionError("reembed writes a new collection: give --out another directory than --collection")
    model = make_embedder(embedder, weights=weights, device=device, options=embedder_options)
    spec = PoolingSpec.parse(pooling, skip_silence=src.pooling.skip_silence) if pooling else src.pooling
    source_tag = f"reembed:{src.root.resolve()}"
    if CollectionStore.exists(root):
        dst = CollectionStore.open(root)
        dst.check_compatible(embedder=model.info, pooling=spec)
        if source_tag not in dst.sources:
            raise CollectionMismatchError(f"{root} exists and was not re-embedded from {src.root}; give a new --out "
                                          "directory (or the one an interrupted run of this command wrote)")
    else:
        dst = CollectionStore.create(root, embedder=model.info, embedder_options=model.options(), pooling=spec,
                                metric=src.metric, segment_s=src.segment_s, segment_hop_s=src.segment_hop_s,
                                index_kind=src.index_kind, exist_ok=True, wait=wait)
    report = ReembedReport(source=str(src.root), collection=str(dst.root))
    by_path = _stored_rows(src)
    report.files, report.rows = len(by_path), sum(len(r) for r in by_path.values())
    mapper = EmbedMapper(model, spec, segment_s=src.segment_s, segment_hop_s=src.segment_hop_s)
    with dst.writer(wait=wait, purpose="reembed") as w:
        if source_tag not in w.manifest.sources:
            w.set_fields(sources=(*w.manifest.sources, source_tag))
        done = set(w.collection.items().ids.tolist())
        todo = [p for p, rows in by_path.items() if not all(r["id"] in done for r in rows)]
        report.already_done = sum(1 for rows in by_path.values() for r in rows if r["id"] in done)
        pending_ids, pending = [], []
        bar = _progress(len(todo), progress)
        for n, path in enumerate(todo, 1):
            rows = [r for r in by_path[path] if r["id"] not in done]
            try:
                vectors, fallback = _embed_rows(model, mapper, spec, path, rows)
            except AudiosimError as e:
                report.failures.append(failure(path, e))
                vectors = None
            if vectors is not None:
                pending_ids += [r["id"] for r in rows]
                pending.append(Rows(path=[r["path"] for r in rows], content_sha256=[r["content_sha256"] for r in rows],
                                    offset_s=np.array([r["offset_s"] for r in rows], dtype=np.float64),
                                    duration_s=np.array([r["duration_s"] for r in rows], dtype=np.float64),
                                    label=[r["label"] for r in rows], embedding=vectors))
                report.embedded_rows += len(rows)
                report.fallback_rows += fallback
            if pending and (len(pending) >= flush_every or n == len(todo)):
                _commit(w, np.asarray(pending_ids, dtype=np.int64), Rows.concat(pending), next_id=src.manifest.next_id)
                pending_ids, pending = [], []
            bar.update(1)
        bar.close()
        if len(w.collection) >= 2 or not w.manifest.postprocess:
            ensure_index(w)
        w.write_errors(report.failures)
    report.seconds = time.perf_counter() - t0
    return report


def _commit(writer, ids: np.ndarray, rows: Rows, *, next_id: int) -> None:
    part = writer.write_part(ids, rows)
    writer.replace_parts([*writer.manifest.parts, part], count=writer.manifest.count + len(rows),
                         next_id=max(int(next_id), int(ids.max()) + 1, writer.manifest.next_id))


def _embed_rows(model, mapper: EmbedMapper, spec: PoolingSpec, path: str, rows: list[dict]) -> tuple[np.ndarray, int]:
    """Vectors [len(rows), dim] for one file's stored rows, and how many came from their own time range."""
    d = decode_item(FileItem(path=path), sample_rate=model.info.sample_rate)
    if d.error is not None:
        raise d.error if isinstance(d.error, AudiosimError) else AudioDecodeError(f"{path}: {d.error}")
    if d.sha256 is not None and d.sha256 != rows[0]["content_sha256"]:
        raise CollectionMismatchError(f"{path} changed since it was indexed (its content hash differs): its stored "
                                      "rows describe other bytes; index the folder again, then reembed")
    new = mapper(d)
    at = {round(float(o), 3): i for i, o in enumerate(new.offset_s)}
    out, fallback = [], 0
    audio = d.audio
    for r in rows:
        i = at.get(round(float(r["offset_s"]), 3))
        if i is not None:
            out.append(new.embedding[i])
            continue
        if audio is None:  # streamed long file: decode it whole for the odd row
            from audiosim.engine.audio.decode import load_audio

            audio = load_audio(path, sample_rate=model.info.sample_rate)
        sr = model.info.sample_rate
        a = int(round(float(r["offset_s"]) * sr))
        b = max(a + 1, int(round((float(r["offset_s"]) + float(r["duration_s"])) * sr)))
        frames, _ = model.embed_frames(audio[a:b])
        out.append(spec(frames).astype(np.float32))
        fallback += 1
    return np.stack(out).astype(np.float32), fallback


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="re-embedding", unit="file")
