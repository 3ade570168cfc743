"""Searcher.search's arguments as Query and Filters values, and its one return type per call shape (SearchResult)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import audiosim
from audiosim.engine.search.query import Filters, Query, SearchResult, split_fields
from audiosim.engine.search.regions import Region
from audiosim.errors import AudiosimError


def test_query_checked_when_made():
    assert Query(clip="a.wav").kind == "clip" and Query(tag="Dog").kind == "tag" and Query(id=3, tag="Dog").kind == "id"
    for bad in ({}, {"clip": "a.wav", "id": 3}, {"vector": [0.0], "waveform": [0.0]}):
        with pytest.raises(AudiosimError, match="give exactly one query"):
            Query(**bad)
    with pytest.raises(AudiosimError, match="start_s/end_s select a time range"):
        Query(id=3, start_s=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Query(id=3).id = 4


def test_split_fields_sorts_keywords_and_overrides_objects(tmp_path):
    q, f = split_fields(None, None, {"clip": "a.wav", "label": "dog", "path_prefix": str(tmp_path)})
    assert q.clip == "a.wav" and f.label == ("dog",) and f.path_prefix == str(tmp_path.resolve())
    q2, f2 = split_fields(q, f, {"label": ["cat", "cow"], "exclude_same_file": True})
    assert q2 is q and f2.label == ("cat", "cow") and f2.path_prefix == f.path_prefix and f2.exclude_same_file
    with pytest.raises(TypeError, match="unexpected keyword arguments lable"):
        split_fields(None, None, {"id": 1, "lable": "dog"})


def test_search_result_is_a_list_that_says_what_it_holds():
    r = SearchResult([1, 2], group="region")
    assert r == [1, 2] and r.grouped and not SearchResult([], group="none").grouped and "region" in repr(r)


@pytest.fixture(scope="module")
def seg_coll(tmp_path_factory):
    from audiosim.engine.audio.synth import write_demo_folder

    base = tmp_path_factory.mktemp("q")
    write_demo_folder(base / "s", per_kind=3, seed=5)
    audiosim.index_folder(base / "s", base / "c", embedder="logmel", segment_s=0.5)
    return base / "s", base / "c"


def test_one_return_type_per_call_shape(seg_coll):
    folder, root = seg_coll
    s = audiosim.open_collection(root).searcher()
    clip = sorted((folder / "tone").iterdir())[0]
    by_kw = s.search(clip=clip, k=3, group="none", label="tone")
    by_obj = s.search(Query(clip=clip), filters=Filters.make(label="tone"), k=3, group="none")
    assert isinstance(by_kw, SearchResult) and not by_kw.grouped and by_kw == by_obj
    assert all(isinstance(h, audiosim.Hit) and h.label == "tone" for h in by_kw)
    regions = s.search(clip=clip, k=3)  # a segment collection groups by region by default
    assert isinstance(regions, SearchResult) and regions.grouped and all(isinstance(r, Region) for r in regions)
    batch = s.search(id=[by_kw[0].id, by_kw[1].id], k=2, group="file")
    assert isinstance(batch, list) and len(batch) == 2
    assert all(isinstance(r, SearchResult) and r.group == "file" for r in batch)
    v = s.search(vector=np.zeros((2, s.collection.dim), np.float32) + 1, k=1, group="none")
    assert [len(r) for r in v] == [1, 1] and all(isinstance(r, SearchResult) for r in v)
    hits, timing = s.search_timed(Query(id=by_kw[0].id), k=1, group="none")
    assert hits[0].id == by_kw[0].id and timing.total_ms >= 0


def _vector_collection(root, rng, *, n=400, dim=24, ids_from=0, kind="hnsw"):
    from audiosim.engine.store.indexing import ensure_index
    from audiosim.engine.store.store import CollectionStore, Rows

    emb = {"name": "toy", "version": "1", "sample_rate": 16000, "dim": dim, "window_s": 1.0, "hop_s": 0.5}
    pool = {"name": "mu", "sg_window": 9, "sg_order": 2, "delta_reduce": "absmean"}
    coll = CollectionStore.create(root, embedder=emb, pooling=pool, index_kind=kind, index_params={"m": 8})
    X = rng.standard_normal((n, dim)).astype(np.float32)
    coll.append(Rows(path=[f"/synthetic/{i % 50}.wav" for i in range(n)], content_sha256=[f"{i:064x}" for i in range(n)],
                     offset_s=np.arange(n) * 0.5, duration_s=np.full(n, 0.5), label=[f"l{i % 3}" for i in range(n)],
                     embedding=X))
    with coll.writer() as w:
        if ids_from:
            w.delete(range(ids_from))  # ids no longer a range starting at 0
        ensure_index(w)
    return coll, X


@pytest.mark.parametrize("ids_from", [0, 7])
def test_the_single_vector_path_answers_as_the_general_one(tmp_path, rng, one_faiss_thread, ids_from):
    from audiosim.engine.search.searcher import Searcher

    coll, X = _vector_collection(tmp_path / "c", rng, ids_from=ids_from)
    s = Searcher(coll.root)
    assert s._state.direct is not None
    Q = rng.standard_normal((20, X.shape[1])).astype(np.float32)
    for k in (1, 5, 10, 25):
        for q in Q:
            fast = s.search(vector=q, k=k)
            general = s.search(vector=q[None, :], k=k)[0]  # a batch of one takes the general path
            assert isinstance(fast, SearchResult) and fast.group == "none" and len(fast) == k
            assert [h.id for h in fast] == [h.id for h in general]
            assert [h.to_dict() | {"score": 0} for h in fast] == [h.to_dict() | {"score": 0} for h in general]
            np.testing.assert_allclose([h.score for h in fast], [h.score for h in general], rtol=1e-5, atol=1e-6)
            assert all(h.id >= ids_from for h in fast)
    hits, timing = s.search_timed(vector=Q[0], k=3)
    assert [h.id for h in hits] == [h.id for h in s.search(vector=Q[0], k=3)] and timing.search_ms >= 0
    # what the single-vector path hands on: other dtypes, strided input, lists; errors come from the general path
    assert [h.id for h in s.search(vector=Q[0].astype(np.float64), k=4)] == [h.id for h in s.search(vector=Q[0], k=4)]
    assert [h.id for h in s.search(vector=np.repeat(Q[0], 2)[::2], k=4)] == [h.id for h in s.search(vector=Q[0], k=4)]
    assert [h.id for h in s.search(vector=Q[0].tolist(), k=4)] == [h.id for h in s.search(vector=Q[0], k=4)]
    bad = Q[0].copy()
    bad[3] = np.nan
    with pytest.raises(AudiosimError, match="finite"):
        s.search(vector=bad, k=3)
    with pytest.raises(AudiosimError, match="dimension"):
        s.search(vector=Q[0][:5], k=3)
    with pytest.raises(AudiosimError, match="k must be at least 1"):
        s.search(vector=Q[0], k=0)
    many = s.search(vector=Q[0], k=10 ** 6)  # k past the collection: what the graph reaches, each row once
    assert [h.id for h in many] == [h.id for h in s.search(vector=Q[:1], k=10 ** 6)[0]]
    assert 10 < len(many) <= len(X) - ids_from and len({h.id for h in many}) == len(many)
