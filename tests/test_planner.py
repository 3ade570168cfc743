"""The filtered-search planner: exact below the threshold, widened ANN above it; checked against brute force."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from audiosim.engine.search.planner import Strategy, plan_filtered, search_filtered
from audiosim.indexes.flat import brute_force
from audiosim.indexes.kinds import make_index

N, DIM = 4000, 24
SELECTIVITIES = (0.001, 0.01, 0.05, 0.2, 0.6)


@pytest.fixture(scope="module")
def synthetic_corpus():
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((40, DIM))
    X = (centres[rng.integers(0, 40, N)] + 0.8 * rng.standard_normal((N, DIM))).astype(np.float32)
    Q = (centres[rng.integers(0, 40, 60)] + 0.8 * rng.standard_normal((60, DIM))).astype(np.float32)
    ids = np.arange(N, dtype=np.int64) * 3 + 11  # sorted, not positions

    def fetch(i):
        return X[(np.asarray(i) - 11) // 3]

    return X, Q, ids, fetch


def _index(kind, X, ids, **params):
    idx = make_index(kind, dim=DIM, metric="cosine", **params)
    if idx.TRAINED:
        idx.train(X)
    idx.add(ids, X)
    return idx


def _truth(X, ids, mask, q, k):
    allowed = np.flatnonzero(mask)
    s, o = brute_force(X[allowed], q[None, :], k, metric="cosine")
    return s[0], ids[allowed][o[0]]


def _masks(rng, selectivity, count):
    for _ in range(count):
        mask = rng.random(N) < selectivity
        if not mask.any():
            mask[rng.integers(0, N)] = True
        yield mask


@pytest.mark.parametrize("kind,params", [("flat", {}), ("hnsw", {"m": 12, "ef_search": 16}),
                                         ("ivf", {"nlist": 64, "nprobe": 2})])
def test_below_the_threshold_the_planner_equals_brute_force(synthetic_corpus, one_faiss_thread, kind, params):
    X, Q, ids, fetch = synthetic_corpus
    idx = _index(kind, X, ids, **params)
    rng = np.random.default_rng(1)
    for sel in SELECTIVITIES:
        for q, mask in zip(Q[:12], _masks(rng, sel, 12)):
            s, i, plan = search_filtered(idx, q, 10, mask=mask, ids=ids, fetch=fetch, exact_max_rows=N)
            assert plan.strategy is Strategy.EXACT
            ts, ti = _truth(X, ids, mask, q, 10)
            assert i.tolist() == ti.tolist()
            np.testing.assert_allclose(s, ts, rtol=1e-5, atol=1e-6)


HNSWLIB = pytest.param(marks=pytest.mark.skipif(importlib.util.find_spec("hnswlib") is None,
                                                 reason="the hnswlib kinds need the hnswlib extra"))


def _with_hnswlib(*cases):
    return [pytest.param(*c, marks=HNSWLIB.marks if c[0] in ("hnswlib", "hnswpca") else ()) for c in cases]


@pytest.mark.parametrize("kind,params,strategy", _with_hnswlib(
    ("flat", {}, Strategy.INDEX), ("hnsw", {"m": 12, "ef_search": 16}, Strategy.POST),
    ("ivf", {"nlist": 64, "nprobe": 2}, Strategy.INDEX),
    ("hnswlib", {"m": 12, "ef_search": 16}, Strategy.INDEX),
    ("hnswpca", {"m": 12, "ef_search": 16, "d": 20, "rerank": 2}, Strategy.INDEX)))
def test_above_the_threshold_recall_stays_high_at_every_selectivity(synthetic_corpus, one_faiss_thread, kind, params,
                                                                   strategy):
    X, Q, ids, fetch = synthetic_corpus
    idx = _index(kind, X, ids, **params)
    rng = np.random.default_rng(2)
    for sel in SELECTIVITIES:
        recalls = []
        for q, mask in zip(Q, _masks(rng, sel, len(Q))):
            s, i, plan = search_filtered(idx, q, 10, mask=mask, ids=ids, fetch=fetch, exact_max_rows=0)
            assert plan.strategy is (strategy if mask.sum() > 10 else Strategy.EXACT)  # k allowed rows: no search
            _, ti = _truth(X, ids, mask, q, 10)
            assert np.isin(i, ids[mask]).all() and i.size == min(10, int(mask.sum()))  # only allowed ids, k of them
            recalls.append(len(set(i.tolist()) & set(ti.tolist())) / ti.size)
        assert np.mean(recalls) >= 0.95, (kind, sel, np.mean(recalls))
        if kind == "flat":
            assert np.mean(recalls) == 1.0


@pytest.mark.parametrize("kind", _with_hnswlib(("hnsw",), ("hnswlib",)))
def test_a_wider_search_never_lowers_filtered_recall(synthetic_corpus, one_faiss_thread, kind):
    X, Q, ids, fetch = synthetic_corpus
    idx = _index(kind, X, ids, m=8, ef_search=16, ef_construction=40)
    rng = np.random.default_rng(3)
    masks = list(_masks(rng, 0.05, len(Q)))
    truths = [_truth(X, ids, m, q, 10)[1] for q, m in zip(Q, masks)]
    previous = 0.0
    for ef in (16, 64, 256, 1024):
        idx.set_knob(ef)
        found = [search_filtered(idx, q, 10, mask=m, ids=ids, fetch=fetch, exact_max_rows=0)[1] for q, m in zip(Q, masks)]
        recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truths)])
        assert recall >= previous - 1e-9, (ef, recall, previous)
        previous = recall
    assert previous >= 0.95


def test_the_plan_widens_with_the_selectivity(synthetic_corpus, one_faiss_thread):
    X, _, ids, _ = synthetic_corpus
    ivf = _index("ivf", X, ids, nlist=64, nprobe=4)
    hnsw = _index("hnsw", X, ids, m=8, ef_search=32)
    assert plan_filtered(ivf, total=N, allowed=100, k=10).strategy is Strategy.EXACT
    p = plan_filtered(ivf, total=N, allowed=N // 4, k=10, exact_max_rows=0)
    assert (p.strategy, p.knob) == (Strategy.INDEX, 16)  # nprobe 4 / selectivity 0.25
    p = plan_filtered(hnsw, total=N, allowed=N // 10, k=10, exact_max_rows=0)
    assert p.strategy is Strategy.POST and p.candidates == 3 * 10 * 10 + 10 and p.knob == p.candidates
    p = plan_filtered(hnsw, total=N, allowed=N // 2, k=10, exact_max_rows=0)
    assert p.candidates == 70 and p.knob == 70
    hnsw.set_knob(500)  # the user's wider search is kept
    assert plan_filtered(hnsw, total=N, allowed=N // 2, k=10, exact_max_rows=0).knob == 500


@pytest.mark.skipif(importlib.util.find_spec("hnswlib") is None, reason="the hnswlib kind needs the hnswlib extra")
def test_hnswlib_filters_inside_its_walk_at_its_own_ef_and_keeps_the_membership_set(synthetic_corpus):
    X, Q, ids, fetch = synthetic_corpus
    idx = _index("hnswlib", X, ids, m=8, ef_search=24)
    p = plan_filtered(idx, total=N, allowed=N // 10, k=10, exact_max_rows=0)
    assert (p.strategy, p.knob, p.candidates) == (Strategy.INDEX, 24, 10)  # no widening: the walk skips rejected nodes
    idx.set_knob(300)  # the user's wider search is what the filtered walk uses
    assert plan_filtered(idx, total=N, allowed=N // 10, k=10, exact_max_rows=0).knob == 300
    idx.set_knob(24)
    # the planner hands the index one read-only array per filter: its membership set is built once
    mask = np.random.default_rng(4).random(N) < 0.3
    cache: dict = {}
    first = search_filtered(idx, Q[0], 10, mask=mask, ids=ids, fetch=fetch, exact_max_rows=0, cache=cache, cache_key="l")
    (allowed,) = cache[("allowed", "l")]
    assert not allowed.flags.writeable and allowed.tolist() == ids[mask].tolist()
    test = idx._membership(allowed)
    again = search_filtered(idx, Q[0], 10, mask=mask, ids=ids, fetch=fetch, exact_max_rows=0, cache=cache, cache_key="l")
    assert idx._membership(allowed) is test and again[1].tolist() == first[1].tolist()
    assert np.isin(first[1], ids[mask]).all()
    writable = ids[mask].copy()  # a caller's array may change in place: never reused
    assert idx._membership(writable) is not idx._membership(writable)
    for n in range(6):  # at most MEMBER_SETS sets are kept
        ro = ids[mask][n:].copy()
        ro.setflags(write=False)
        idx._membership(ro)
    from audiosim.indexes.hnswlib_index import MEMBER_SETS
    assert len(idx._members) == MEMBER_SETS


def test_too_few_allowed_hits_fall_back_to_exact(synthetic_corpus, one_faiss_thread):
    X, Q, ids, fetch = synthetic_corpus
    idx = _index("ivf", X, ids, nlist=64, nprobe=1)
    mask = np.zeros(N, bool)
    mask[[5, 900, 2500, 3999]] = True  # four rows in (most likely) four different cells
    s, i, _ = search_filtered(idx, Q[0], 10, mask=mask, ids=ids, fetch=fetch, exact_max_rows=0)
    assert sorted(i.tolist()) == sorted(ids[mask].tolist())


def _toy_searcher(tmp_path, kind: str, params: dict, labels: np.ndarray, X: np.ndarray):
    """A Searcher over a collection of the synthetic vectors ``X`` labelled ``labels``, indexed with ``kind``."""
    from audiosim.engine.search.searcher import Searcher
    from audiosim.engine.store.indexing import ensure_index
    from audiosim.engine.store.store import CollectionStore, Rows

    emb = {"name": "toy", "version": "1", "sample_rate": 16000, "dim": DIM, "window_s": 1.0, "hop_s": 0.5,
           "weights_sha256": "ab" * 32}
    pool = {"name": "mu", "sg_window": 9, "sg_order": 2, "delta_reduce": "absmean"}
    coll = CollectionStore.create(tmp_path / "c", embedder=emb, pooling=pool, metric="cosine", index_kind=kind,
                                  index_params=params)
    n = len(labels)
    coll.append(Rows(path=[f"/synthetic/{i}.wav" for i in range(n)], content_sha256=[f"{i:064x}" for i in range(n)],
                     offset_s=np.zeros(n), duration_s=np.full(n, 1.0), label=labels.tolist(), embedding=X))
    with coll.writer() as w:
        ensure_index(w)
    return Searcher(coll.root)


def test_searcher_filters_equal_brute_force_on_random_labels(tmp_path, rng):
    """Through Searcher.search: random label filters, ids and scores equal a numpy brute force over the allowed rows."""
    n = 3000
    labels = rng.choice([f"l{i}" for i in range(30)], n, p=np.r_[[0.4, 0.2], np.full(28, 0.4 / 28)])
    X = rng.standard_normal((n, DIM)).astype(np.float32)
    searcher = _toy_searcher(tmp_path, "hnsw", {"m": 8, "ef_search": 16}, labels, X)
    for trial in range(25):
        chosen = rng.choice(np.unique(labels), rng.integers(1, 4), replace=False).tolist()
        q = rng.standard_normal(DIM).astype(np.float32)
        hits = searcher.search(vector=q, k=7, label=chosen)
        allowed = np.flatnonzero(np.isin(labels, chosen))
        s, o = brute_force(X[allowed], q[None, :], 7, metric="cosine")
        assert [h.id for h in hits] == allowed[o[0]].tolist(), (trial, chosen)
        np.testing.assert_allclose([h.score for h in hits], s[0], rtol=1e-5, atol=1e-6)
        assert all(h.label in chosen for h in hits)


@pytest.mark.parametrize("kind,params", _with_hnswlib(("flat", {}), ("hnsw", {"m": 8, "ef_search": 16}),
                                                      ("hnswlib", {"m": 8, "ef_search": 16})))
def test_the_single_label_fast_path_answers_as_the_general_path(tmp_path, rng, kind, params):
    """search(vector=v, label="x") takes the searcher's fast path; it must return what the general path returns
    (the same planner: exact for a rare label, inside the index for a common one) and nothing outside the label."""
    from audiosim.engine.search.query import Filters

    n = 12000  # "common" holds ~9,000 rows: above the planner's exact threshold (8,192)
    labels = rng.choice(["common", "rare", "other"], n, p=[0.75, 0.01, 0.24])
    X = rng.standard_normal((n, DIM)).astype(np.float32)
    searcher = _toy_searcher(tmp_path, kind, params, labels, X)
    assert searcher._state.direct is not None  # the fast path applies to this collection
    general_calls = []
    timed = searcher.search_timed
    searcher.search_timed = lambda *a, **kw: general_calls.append(kw) or timed(*a, **kw)
    for trial in range(12):
        q = rng.standard_normal(DIM).astype(np.float32)
        for label in ("common", "rare"):
            fast = searcher.search(vector=q, k=7, label=label)
            general = searcher.search(vector=q, k=7, filters=Filters.make(label=label))
            assert [h.id for h in fast] == [h.id for h in general], (trial, label)
            np.testing.assert_allclose([h.score for h in fast], [h.score for h in general], rtol=1e-5, atol=1e-6)
            assert len(fast) == 7 and all(h.label == label for h in fast)
            if label == "rare" or kind == "flat":  # exact: equal to brute force
                allowed = np.flatnonzero(labels == label)
                s, o = brute_force(X[allowed], q[None, :], 7, metric="cosine")
                assert [h.id for h in fast] == allowed[o[0]].tolist()
    assert searcher.search(vector=q, k=7, label="no-such-label") == []
    assert len(general_calls) == 24 and all("filters" in kw for kw in general_calls)  # the fast calls never got there
