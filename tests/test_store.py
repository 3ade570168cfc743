"""The Parquet vector store: lossless round trip, schema, refusal to mix, atomic deletes."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from audiosim.engine.store.store import CollectionStore, Rows
from audiosim.errors import CollectionError, CollectionMismatchError

EMB = {"name": "toy", "version": "1", "sample_rate": 16000, "dim": 4, "window_s": 1.0, "hop_s": 0.5, "weights_sha256": "ab" * 32}
POOL = {"name": "mu", "sg_window": 9, "sg_order": 2, "delta_reduce": "absmean"}


def _rows(n, rng, prefix="f", label="x"):
    return Rows(
        path=[f"/data/{prefix}{i}.wav" for i in range(n)],
        content_sha256=[f"{i:064x}" for i in range(n)],
        offset_s=np.zeros(n),
        duration_s=np.full(n, 2.5),
        label=[label if i % 2 else None for i in range(n)],
        embedding=rng.standard_normal((n, 4)).astype(np.float32),
    )


def _delete(coll, ids) -> int:
    """Drop ids in one commit (the store alone: no index to keep current)."""
    with coll.writer() as w:
        return w.delete(ids)


@pytest.fixture
def coll(tmp_path):
    return CollectionStore.create(tmp_path / "c", embedder=EMB, embedder_options={}, pooling=POOL, metric="cosine")


def test_round_trip_is_lossless(coll, rng):
    r1, r2 = _rows(5, rng), _rows(3, rng, prefix="g")
    ids1 = coll.append(r1)
    ids2 = coll.append(r2)
    assert ids1.tolist() == [0, 1, 2, 3, 4] and ids2.tolist() == [5, 6, 7]
    reopened = CollectionStore.open(coll.root)
    ids, X = reopened.embeddings()
    assert ids.tolist() == list(range(8)) and X.dtype == np.float32
    np.testing.assert_array_equal(X, np.concatenate([r1.embedding, r2.embedding]))  # bit-exact
    recs = reopened.records()
    assert [r["path"] for r in recs] == r1.path + r2.path
    assert [r["label"] for r in recs] == r1.label + r2.label
    assert recs[0]["duration_s"] == 2.5 and len(reopened) == 8


def test_schema_and_metadata(coll, rng):
    coll.append(_rows(2, rng))
    part = coll.root / coll.manifest.parts[0].name
    schema = pq.read_schema(part)
    assert schema.names == ["id", "path", "content_sha256", "offset_s", "duration_s", "label", "embedding"]
    assert str(schema.field("id").type) == "int64"
    assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[4]"
    assert schema.field("label").nullable
    meta = json.loads(schema.metadata[b"audiosim"])
    # the pooling record always names skip_silence (an old one without it reads as "silence kept")
    assert meta["embedder"] == EMB and meta["pooling"] == {**POOL, "skip_silence": False} and "audiosim_version" in meta
    manifest = json.loads((coll.root / "collection.json").read_text())
    assert manifest["embedder"]["weights_sha256"] == EMB["weights_sha256"] and manifest["count"] == 2


@pytest.mark.parametrize("change", [
    {"embedder": {**EMB, "name": "other"}},
    {"embedder": {**EMB, "weights_sha256": "cd" * 32}},
    {"embedder": {**EMB, "version": "2"}},
    {"pooling": {**POOL, "name": "mu+sigma"}},
])
def test_mixing_is_refused(coll, change):
    from audiosim.engine.models.embedders.base import EmbedderInfo
    from audiosim.engine.models.pooling import PoolingSpec

    kwargs = {"embedder": EMB, "pooling": POOL, **change}
    with pytest.raises(CollectionMismatchError, match="refusing to mix"):
        CollectionStore.open(coll.root).check_compatible(embedder=EmbedderInfo(**kwargs["embedder"]),
                                                    pooling=PoolingSpec.from_dict(kwargs["pooling"]))
    CollectionStore.open(coll.root).check_compatible(embedder=EmbedderInfo(**EMB), pooling=PoolingSpec.from_dict(POOL))


def test_wrong_dim_refused(coll, rng):
    bad = _rows(2, rng)
    bad = Rows(**{**bad.__dict__, "embedding": np.zeros((2, 5), np.float32)})
    with pytest.raises(CollectionMismatchError):
        coll.append(bad)


def test_delete_and_replace_keep_ids_stable(coll, rng):
    coll.append(_rows(4, rng))
    assert _delete(coll, [1, 3]) == 2
    ids, _ = coll.embeddings()
    assert ids.tolist() == [0, 2] and len(coll) == 2
    new = coll.append(_rows(1, rng, prefix="h"), replacing=[0])
    assert new.tolist() == [4]  # ids are never reused
    assert CollectionStore.open(coll.root).embeddings()[0].tolist() == [2, 4]
    # on disk: the parts of the current revision and of the one before it (readers may still hold it), nothing else
    before = CollectionStore.open(coll.root).manifest
    coll.append(_rows(1, rng, prefix="i"))
    on_disk = {f"parts/{p.name}" for p in (coll.root / "parts").glob("*.parquet")}
    assert on_disk == set(before.part_names()) | set(coll.manifest.part_names())


def test_orphan_part_from_interrupted_write_is_ignored(coll, rng):
    coll.append(_rows(2, rng))
    (coll.root / "parts" / "part-9999999999999-deadbeef.parquet").write_bytes(b"half written")
    assert len(CollectionStore.open(coll.root).embeddings()[0]) == 2
    coll.append(_rows(1, rng, prefix="z"))  # next write removes the orphan
    assert not (coll.root / "parts" / "part-9999999999999-deadbeef.parquet").exists()


def test_open_errors(tmp_path):
    with pytest.raises(CollectionError, match="audiosim index"):
        CollectionStore.open(tmp_path)
    (tmp_path / "collection.json").write_text("{not json")
    with pytest.raises(CollectionError, match="corrupt"):
        CollectionStore.open(tmp_path)


def test_non_finite_refused(coll, rng):
    r = _rows(1, rng)
    r.embedding[0, 0] = np.nan
    with pytest.raises(CollectionError):
        coll.append(r)


# ---------------------------------------------------------------------- issue 11: one writer, snapshots, integrity
def test_create_exist_ok_opens_what_another_process_created(tmp_path, rng):
    """Two `index` runs starting at once: the second create opens the first's collection (same settings)."""
    first = CollectionStore.create(tmp_path / "c", embedder=EMB, pooling=POOL, metric="cosine")
    first.append(_rows(2, rng))
    again = CollectionStore.create(tmp_path / "c", embedder=EMB, pooling=POOL, metric="cosine", exist_ok=True)
    assert len(again) == 2 and again.revision == first.revision
    with pytest.raises(CollectionError, match="already holds"):
        CollectionStore.create(tmp_path / "c", embedder=EMB, pooling=POOL, metric="cosine")
    with pytest.raises(CollectionMismatchError, match="metric"):
        CollectionStore.create(tmp_path / "c", embedder=EMB, pooling=POOL, metric="euclidean", exist_ok=True)


def test_lock_refuses_nan_wait_and_names_an_unwritable_folder(tmp_path, monkeypatch):
    import os

    from audiosim.engine.store.lock import WriterLock

    with pytest.raises(CollectionError, match="--wait"):
        WriterLock(tmp_path, wait=float("nan"))
    assert WriterLock(tmp_path, wait=-3).wait == 0.0
    real = os.open

    def read_only(path, flags, *a):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied")
        return real(path, flags, *a)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(CollectionError, match="needs write access"):
        WriterLock(tmp_path).acquire()


def test_writer_removes_temporary_files_and_leaves_unknown_files(coll, rng):
    coll.append(_rows(2, rng))
    root = coll.root
    leftovers = [root / ".collection.json.0a1b.tmp", root / "parts" / ".part-00000009-ab.parquet.tmp",
                 root / ".errors.jsonl.77.tmp"]
    for f in leftovers:
        f.write_bytes(b"x")
    mine = [root / "notes.tmp.txt", root / ".mine.tmp", root / "parts" / "README", root / "index" / "keep.me"]
    (root / "index").mkdir(exist_ok=True)
    for f in mine:
        f.write_text("user file")
    with coll.writer():  # taking the lock is enough: a killed writer's temporary files go
        pass
    assert not any(f.exists() for f in leftovers)
    coll.append(_rows(1, rng, prefix="q"))  # a commit and its garbage collection
    assert all(f.exists() for f in mine)


def test_reader_snapshot_survives_commits_that_retire_its_parts(coll, rng):
    coll.append(_rows(4, rng))
    reader = CollectionStore.open(coll.root)  # revision r
    _delete(coll, [0])  # r + 1: the part is rewritten; the old one is kept for readers of r
    assert reader.read_table(["path"]).num_rows == 4  # still the snapshot of r
    _delete(coll, [1])  # r + 2: the part of r is gone from disk
    t = reader.read_table(["path"])  # the reader refreshes and retries
    assert t.num_rows == 2 and reader.revision == coll.revision
    coll.append(_rows(3, rng, prefix="z"))  # ids 4..6 in a second part
    stale = CollectionStore.open(coll.root)
    batches = stale.iter_batches(["path"], batch_rows=100)
    assert next(batches).num_rows == 2  # the first part is read; the second is retired by two commits
    _delete(coll, [4])
    _delete(coll, [5])
    with pytest.raises(CollectionError, match="read it again"):
        next(batches)


def test_a_swapped_part_of_the_same_size_is_caught_on_read(coll, rng):
    """Parts are checked against their record's id range, so a same-size swap cannot pass for the other."""
    a = _rows(3, rng, prefix="a")
    coll.append(a)
    coll.append(Rows(**{**a.__dict__, "path": [p.replace("/a", "/b") for p in a.path]}))
    pa_, pb = (coll.root / p.name for p in coll.manifest.parts)
    m = json.loads((coll.root / "collection.json").read_text())  # as if the two had the same size
    m["parts"][0]["bytes"], m["parts"][1]["bytes"] = pb.stat().st_size, pa_.stat().st_size
    (coll.root / "collection.json").write_text(json.dumps(m))
    x = pa_.read_bytes()
    pa_.write_bytes(pb.read_bytes())
    pb.write_bytes(x)
    from audiosim.errors import CorruptCollectionError

    with pytest.raises(CorruptCollectionError, match="holds ids 3..5, the manifest says 0..2"):
        CollectionStore.open(coll.root).embeddings()


def test_a_full_disk_keeps_the_previous_revision(coll, rng, monkeypatch):
    import errno

    import pyarrow.parquet as pq_mod

    coll.append(_rows(2, rng))
    before = CollectionStore.open(coll.root).manifest

    def full(table, where, **kw):
        open(where, "wb").write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq_mod, "write_table", full)
    with pytest.raises(CollectionError, match="No space left on device.*revision 1 is intact"):
        coll.append(_rows(2, rng, prefix="n"))
    monkeypatch.undo()
    assert CollectionStore.open(coll.root).manifest == before
    assert not list((coll.root / "parts").glob(".*.tmp"))
    import audiosim.engine.store.store as store_mod  # the store writes its manifest through the name it imported

    def full_json(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "write_json_atomic", full_json)
    with pytest.raises(CollectionError, match="previous revision is intact"):
        coll.append(_rows(2, rng, prefix="m"))
    monkeypatch.undo()
    assert CollectionStore.open(coll.root).manifest == before
    coll.append(_rows(1, rng, prefix="o"))  # the orphan part of the failed commit is collected
    on_disk = {f"parts/{p.name}" for p in (coll.root / "parts").glob("*.parquet")}
    assert on_disk == set(before.part_names()) | set(coll.manifest.part_names())


@pytest.mark.parametrize("change,message", [
    ({"next_id": 1}, "next_id 1 is not above the largest stored id 2"),
    ({"format": True}, "unsupported collection format True"),
    ({"dim": 4.0}, "field 'dim': expected an integer"),
    ({"segment_s": float("inf")}, "field 'segment_s': expected a finite number"),
    ({"next_id": 2**70}, "beyond"),
    ({"extra": "text"}, "field 'extra'"),
])
def test_manifest_validation_names_the_field_and_the_fix(coll, rng, change, message):
    from audiosim.engine.store.manifest import Manifest, ManifestError

    coll.append(_rows(3, rng))
    d = json.loads((coll.root / "collection.json").read_text())
    with pytest.raises(ManifestError, match=message) as e:
        Manifest.from_dict({**d, **change}, source=str(coll.root / "collection.json"))
    assert f"audiosim repair --collection {coll.root}" in str(e.value)
