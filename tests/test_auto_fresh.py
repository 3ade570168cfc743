"""Honest auto-tuning: tuned on queries the index has never seen, and a change of kind or parameters rebuilds."""

from __future__ import annotations

import numpy as np
import pytest

import audiosim.indexes.auto as auto
from audiosim.indexes.auto import choose_and_build
from audiosim.indexes.flat import brute_force

DIM = 32
SMALL = {"exact_max_n": 500, "graph_max_n": 10_000}  # thresholds scaled down: an HNSW graph for test-sized data

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def synthetic_clusters():
    rng = np.random.default_rng(5)
    c = rng.standard_normal((60, DIM)) * 2
    db = (c[rng.integers(0, 60, 5000)] + rng.standard_normal((5000, DIM))).astype(np.float32)
    fresh = (c[rng.integers(0, 60, 300)] + rng.standard_normal((300, DIM))).astype(np.float32)
    return db, fresh, np.arange(len(db), dtype=np.int64) + 7


def _batches(ids, db):
    return lambda: ((ids[s:s + 700], db[s:s + 700]) for s in range(0, len(ids), 700))


def test_tuning_queries_are_not_in_the_index_and_join_it_afterwards(synthetic_clusters, monkeypatch):
    db, _, ids = synthetic_clusters
    seen = {}
    real = auto.tune

    def spy(index, queries, truth, **kw):
        seen["index_ids"] = index.ids()
        seen["queries"] = np.asarray(queries).copy()
        seen["query_ids"] = kw.get("query_ids")
        return real(index, queries, truth, **kw)

    monkeypatch.setattr(auto, "tune", spy)
    index = choose_and_build(_batches(ids, db), n=len(ids), dim=DIM, metric="cosine", queries=100, **SMALL)
    assert index.KIND == "hnsw" and len(index) == len(ids)
    held = ids[[int(np.flatnonzero((db == q).all(axis=1))[0]) for q in seen["queries"]]]
    assert held.size == 100 and not np.isin(held, seen["index_ids"]).any()  # fresh while tuning
    assert seen["index_ids"].size == len(ids) - 100 and seen["query_ids"] is None
    assert np.isin(held, index.ids()).all()  # and stored afterwards
    info = index.build_info
    assert info["fresh_query_recall"] == info["measured_recall"] and "held-out" in info["tuned_on"]


def test_the_tuned_setting_meets_the_target_on_fresh_queries(synthetic_clusters):
    db, fresh, ids = synthetic_clusters
    index = choose_and_build(_batches(ids, db), n=len(ids), dim=DIM, metric="cosine", target_recall=0.95,
                             queries=300, **SMALL)
    assert index.build_info["target_met"]
    _, truth = brute_force(db, fresh, 10, metric="cosine")
    found = index.search(fresh, 10).ids
    recall = np.mean([len(set(f.tolist()) & set(ids[t].tolist())) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.95, (recall, index.build_info["value"])


def _collection(tmp_path, rng, *, kind, params):
    from audiosim.engine.store.store import CollectionStore, Rows

    emb = {"name": "toy", "version": "1", "sample_rate": 16000, "dim": DIM, "window_s": 1.0, "hop_s": 0.5,
           "weights_sha256": "ab" * 32}
    pool = {"name": "mu", "sg_window": 9, "sg_order": 2, "delta_reduce": "absmean"}
    coll = CollectionStore.create(tmp_path / "c", embedder=emb, pooling=pool, index_kind=kind, index_params=params)
    n = 600
    coll.append(Rows(path=[f"/synthetic/{i}.wav" for i in range(n)], content_sha256=[f"{i:064x}" for i in range(n)],
                     offset_s=np.zeros(n), duration_s=np.ones(n), label=[None] * n,
                     embedding=rng.standard_normal((n, DIM)).astype(np.float32)))
    return coll


def test_a_parameter_change_rebuilds_the_index(tmp_path, rng):
    from audiosim.engine.search.searcher import Searcher
    from audiosim.engine.store.indexing import ensure_index
    from audiosim.indexes.base import read_sidecar

    coll = _collection(tmp_path, rng, kind="hnsw", params={"m": 8, "ef_search": 16})
    with coll.writer() as w:
        first = ensure_index(w)
        assert first.params == {"m": 8, "ef_search": 16}
        w.set_fields(index_params={"m": 8, "ef_search": 200})
        assert not w.manifest.index_fresh  # same kind, revision and count: only the parameters changed
        second = ensure_index(w)
    assert second.dir != first.dir and second.params == {"m": 8, "ef_search": 200}
    sidecar = read_sidecar(coll.root / second.dir)
    assert sidecar["params"]["ef_search"] == 200 and sidecar["how"] == "rebuilt"
    coll.refresh()
    assert coll.manifest.index_fresh
    assert Searcher(coll.root)._state.index.index.ef_search == 200
    with coll.writer() as w:  # the kind too
        w.set_fields(index_kind="flat", index_params={})
        assert ensure_index(w).kind == "flat"


def test_an_auto_budget_change_rebuilds_the_index(tmp_path, rng):
    from audiosim.engine.store.indexing import ensure_index

    coll = _collection(tmp_path, rng, kind="auto", params={"memory_budget": "2G"})
    with coll.writer() as w:
        first = ensure_index(w)
        w.set_fields(index_params={"memory_budget": "64M"})
        second = ensure_index(w)
        assert second.dir != first.dir and second.params == {"memory_budget": "64M"}
        assert ensure_index(w) == second  # and nothing more once it is current


def test_an_index_record_without_params_stays_current():
    """Indexes saved before parameters were recorded are not rebuilt by every reader (only by the next writer)."""
    from audiosim.engine.store.manifest import IndexRecord, Manifest

    m = Manifest.from_dict({
        "format": 2, "embedder": {"name": "toy", "version": "1", "sample_rate": 16000, "dim": 4, "window_s": 1.0,
                                  "hop_s": 0.5}, "pooling": {"name": "mu"}, "dim": 4, "metric": "cosine", "count": 0,
        "next_id": 0, "revision": 3, "index_kind": "hnsw", "index_params": {"m": 8},
        "index": {"dir": "index/r00000003", "revision": 3, "kind": "hnsw", "count": 0}})
    assert m.index.params is None and m.index_fresh
    assert not m.with_changes(index=IndexRecord(dir="index/r00000003", revision=3, kind="hnsw", count=0,
                                                params={"m": 16})).index_fresh
