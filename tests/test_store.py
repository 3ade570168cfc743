"""The Parquet vector store: lossless round trip, schema, refusal to mix, atomic deletes."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from audiosim.engine.store import Collection, Rows
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


@pytest.fixture
def coll(tmp_path):
    return Collection.create(tmp_path / "c", embedder=EMB, embedder_options={}, pooling=POOL, metric="cosine")


def test_round_trip_is_lossless(coll, rng):
    r1, r2 = _rows(5, rng), _rows(3, rng, prefix="g")
    ids1 = coll.append(r1)
    ids2 = coll.append(r2)
    assert ids1.tolist() == [0, 1, 2, 3, 4] and ids2.tolist() == [5, 6, 7]
    reopened = Collection.open(coll.root)
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
    assert meta["embedder"] == EMB and meta["pooling"] == POOL and "audiosim_version" in meta
    manifest = json.loads((coll.root / "collection.json").read_text())
    assert manifest["embedder"]["weights_sha256"] == EMB["weights_sha256"] and manifest["count"] == 2


@pytest.mark.parametrize("change", [
    {"embedder": {**EMB, "name": "other"}},
    {"embedder": {**EMB, "weights_sha256": "cd" * 32}},
    {"embedder": {**EMB, "version": "2"}},
    {"pooling": {**POOL, "name": "mu+sigma"}},
])
def test_mixing_is_refused(coll, change):
    from audiosim.engine.embedders.base import EmbedderInfo
    from audiosim.engine.pooling import PoolingSpec

    kwargs = {"embedder": EMB, "pooling": POOL, **change}
    with pytest.raises(CollectionMismatchError, match="refusing to mix"):
        Collection.open(coll.root).check_compatible(embedder=EmbedderInfo(**kwargs["embedder"]),
                                                    pooling=PoolingSpec.from_dict(kwargs["pooling"]))
    Collection.open(coll.root).check_compatible(embedder=EmbedderInfo(**EMB), pooling=PoolingSpec.from_dict(POOL))


def test_wrong_dim_refused(coll, rng):
    bad = _rows(2, rng)
    bad = Rows(**{**bad.__dict__, "embedding": np.zeros((2, 5), np.float32)})
    with pytest.raises(CollectionMismatchError):
        coll.append(bad)


def test_delete_and_replace_keep_ids_stable(coll, rng):
    coll.append(_rows(4, rng))
    assert coll.delete(ids=[1, 3]) == 2
    ids, _ = coll.embeddings()
    assert ids.tolist() == [0, 2] and len(coll) == 2
    new = coll.append(_rows(1, rng, prefix="h"), replacing=[0])
    assert new.tolist() == [4]  # ids are never reused
    assert Collection.open(coll.root).embeddings()[0].tolist() == [2, 4]
    # on disk: the parts of the current revision and of the one before it (readers may still hold it), nothing else
    before = Collection.open(coll.root).manifest
    coll.append(_rows(1, rng, prefix="i"))
    on_disk = {f"parts/{p.name}" for p in (coll.root / "parts").glob("*.parquet")}
    assert on_disk == set(before.part_names()) | set(coll.manifest.part_names())


def test_orphan_part_from_interrupted_write_is_ignored(coll, rng):
    coll.append(_rows(2, rng))
    (coll.root / "parts" / "part-9999999999999-deadbeef.parquet").write_bytes(b"half written")
    assert len(Collection.open(coll.root).embeddings()[0]) == 2
    coll.append(_rows(1, rng, prefix="z"))  # next write removes the orphan
    assert not (coll.root / "parts" / "part-9999999999999-deadbeef.parquet").exists()


def test_open_errors(tmp_path):
    with pytest.raises(CollectionError, match="audiosim index"):
        Collection.open(tmp_path)
    (tmp_path / "collection.json").write_text("{not json")
    with pytest.raises(CollectionError, match="corrupt"):
        Collection.open(tmp_path)


def test_non_finite_refused(coll, rng):
    r = _rows(1, rng)
    r.embedding[0, 0] = np.nan
    with pytest.raises(CollectionError):
        coll.append(r)
