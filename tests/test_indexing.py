"""A collection's index in the engine: streaming builds, in-place updates, `auto`, re-ranking from Parquet.

Proves: the index built part by part answers like brute force over the stored vectors; after an
append or a delete the writer updates the saved index in place (no rebuild) and the result
equals a rebuild; a trained kind is rebuilt once the collection has grown past the retrain
factor; ``auto`` chooses within the memory budget, records its measured recall, and the
searcher re-ranks a compressed index's candidates exactly from the stored vectors (a search by
id finds the item itself with cosine 1); ``audiosim index --index-kind auto`` and ``info`` show it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiosim.engine.models.embedders.base import EmbedderInfo
from audiosim.engine.store.indexing import ensure_index, load_for_search
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.engine.search.library import Collection
from audiosim.engine.store.store import Rows
from audiosim.indexes.flat import brute_force

DIM = 32


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def clustered(rng, n, centers=40):
    c = rng.standard_normal((centers, DIM)) * 3
    return (c[rng.integers(0, centers, n)] + rng.standard_normal((n, DIM))).astype(np.float32)


def make_collection(root, rng, n, *, parts=4, kind="flat", params=None):
    info = EmbedderInfo(name="toy", version="1", sample_rate=16000, dim=DIM, window_s=1.0, hop_s=0.5)
    coll = Collection.create(root, embedder=info, pooling=PoolingSpec.parse("mu"), index_kind=kind, index_params=params)
    append(coll, rng, n, parts=parts)
    return coll


def append(coll, rng, n, *, parts=1):
    with coll.writer() as w:
        for chunk in np.array_split(np.arange(n), parts):
            start = w.manifest.next_id
            m = chunk.size
            w.append(Rows(path=[f"/d/{start + i}.wav" for i in range(m)], content_sha256=[f"{start + i:064x}" for i in range(m)],
                          offset_s=np.zeros(m), duration_s=np.ones(m), label=[None] * m, embedding=clustered(rng, m)))
        ensure_index(w)
    coll.refresh()
    return coll


def sidecar(coll):
    return json.loads((coll.root / coll.manifest.index.dir / "index.json").read_text())


def test_streaming_build_answers_like_brute_force(tmp_path, rng):
    coll = make_collection(tmp_path / "c", rng, 2000, parts=5)
    ids, X = coll.embeddings()
    q = X[:20] + 0.05 * rng.standard_normal((20, DIM)).astype(np.float32)
    hits = coll.searcher().search(vector=q, k=10)
    _, pos = brute_force(X, q, 10, metric="cosine")
    assert [[h.id for h in row] for row in hits] == ids[pos].tolist()


def test_append_and_delete_update_the_saved_index_in_place(tmp_path, rng):
    coll = make_collection(tmp_path / "c", rng, 1500, parts=3)
    assert sidecar(coll)["how"] == "rebuilt"
    append(coll, rng, 300)
    assert sidecar(coll)["how"] == "updated in place" and coll.manifest.index_fresh
    with coll.writer() as w:
        w.delete(range(100, 200))
        ensure_index(w)
    coll.refresh()
    side = sidecar(coll)
    assert side["how"] == "updated in place" and side["count"] == 1700
    si = load_for_search(coll)
    np.testing.assert_array_equal(si.index.ids(), coll.items().ids)
    q = coll.vectors([5, 250, 1650])
    in_place = coll.searcher().search(vector=q, k=10)
    with coll.writer() as w:
        ensure_index(w, force=True)
    coll.refresh()
    assert sidecar(coll)["how"] == "rebuilt"
    rebuilt = coll.searcher().search(vector=q, k=10)
    assert [[(h.id, round(h.score, 5)) for h in r] for r in in_place] == [[(h.id, round(h.score, 5)) for h in r] for r in rebuilt]


def test_a_trained_kind_is_rebuilt_past_the_retrain_factor(tmp_path, rng):
    coll = make_collection(tmp_path / "c", rng, 800, parts=2, kind="ivf")
    assert sidecar(coll)["trained_for"] == 800
    append(coll, rng, 400)  # 1200 <= 4 x 800: in place, still trained for 800
    assert sidecar(coll)["how"] == "updated in place" and sidecar(coll)["trained_for"] == 800
    append(coll, rng, 2400)  # 3600 > 4 x 800: retrained on the collection as it is now
    assert sidecar(coll)["how"] == "rebuilt" and sidecar(coll)["trained_for"] == 3600


def test_auto_chooses_within_the_budget_and_reranks_from_parquet(tmp_path, rng):
    budget = 400_000  # far below the 3.9 MB of float vectors: a compressed kind
    coll = make_collection(tmp_path / "c", rng, 30_000, parts=6, kind="auto",
                           params={"memory_budget": budget, "target_recall": 0.9})
    side = sidecar(coll)
    build = side["build"]
    assert build["requested"] == "auto" and build["kind"] in ("ivfsq8", "ivfpq") and side["memory_bytes"] <= budget
    assert build["measured_recall"] >= 0.9 and build["target_met"] and build["rerank"] > 0
    s = coll.searcher()
    assert s.search(id=123, k=1)[0].id == 123 and s.search(id=123, k=1)[0].score == pytest.approx(1.0, abs=1e-5)
    ids, X = coll.embeddings()
    q = X[rng.integers(0, len(X), 50)] + 0.05 * rng.standard_normal((50, DIM)).astype(np.float32)
    _, pos = brute_force(X, q, 10, metric="cosine")
    got = s.search(vector=q, k=10)
    recall = np.mean([len({h.id for h in row} & set(ids[p].tolist())) / 10 for row, p in zip(got, pos)])
    assert recall >= 0.85, recall
    exact = brute_force(X, q[:1], 3, metric="cosine")[0][0]
    np.testing.assert_allclose([h.score for h in got[0][:3]], exact, atol=1e-5)  # re-ranked: exact scores
    filtered = s.search(vector=q[0], k=5, label=None, min_duration_s=0.5)  # a filter through the compressed index
    assert len(filtered) == 5


def test_cli_auto_and_info(demo_folder, tmp_path):
    from click.testing import CliRunner

    from audiosim.cli import main

    coll = tmp_path / "c"
    r = CliRunner().invoke(main, ["index", str(demo_folder), "--collection", str(coll), "--embedder", "logmel",
                                  "--index-kind", "auto", "--memory-budget", "64M", "--target-recall", "0.9", "--quiet"])
    assert r.exit_code == 0, r.output
    info = json.loads(CliRunner().invoke(main, ["info", "--collection", str(coll), "--json"]).output)
    build = info["index"]["sidecar"]["build"]
    assert info["index_kind"] == "auto" and build["kind"] == "flat" and build["memory_budget"] == 64 << 20
    text = CliRunner().invoke(main, ["info", "--collection", str(coll)]).output
    assert "index        auto (current): chose flat" in text
    bad = CliRunner().invoke(main, ["index", str(demo_folder), "--collection", str(tmp_path / "d"), "--embedder", "logmel",
                                    "--memory-budget", "1G"])
    assert bad.exit_code == 2 and "--index-kind auto" in bad.output


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, 1.5, "high", True])
def test_auto_refuses_a_target_recall_that_is_not_a_number_in_0_1(demo_folder, tmp_path, bad):
    """Issue 18: ``--target-recall nan`` was stored as null and the next rebuild raised TypeError."""
    from audiosim.engine.ingest.indexer import index_folder
    from audiosim.errors import AudiosimError

    with pytest.raises(AudiosimError, match="target_recall"):
        index_folder(demo_folder, tmp_path / "c", embedder="logmel", index_kind="auto", index_params={"target_recall": bad})
    assert not (tmp_path / "c").exists()


def test_a_null_target_recall_stored_by_an_older_version_rebuilds_with_the_default(tmp_path, rng):
    """Issue 18: a manifest that recorded ``target_recall: null`` made every rebuild raise TypeError, after which
    query and repair crashed while check said ok. Null means "not given": the default target."""
    from audiosim.engine.store.integrity import check_collection, repair_collection

    coll = make_collection(tmp_path / "c", rng, 300, kind="auto", params={"target_recall": 0.9})
    path = coll.root / "collection.json"
    m = json.loads(path.read_text())
    m["index_params"]["target_recall"] = None
    path.write_text(json.dumps(m))
    coll = Collection.open(coll.root)
    append(coll, rng, 10)  # appends and rebuilds (ensure_index)
    assert sidecar(coll)["build"]["target_recall"] == pytest.approx(0.95)
    assert coll.searcher().search(id=5, k=1)[0].id == 5
    assert repair_collection(coll.root).ok and check_collection(coll.root).ok
