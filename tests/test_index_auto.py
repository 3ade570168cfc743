"""The auto kind: plans fit the memory budget, tuning reaches the target recall, the sidecar records both.

Also the pieces it is made of: exact streamed ground truth equals brute force, and recall@k
counts exact duplicates (ties with the k-th neighbour) as hits.
"""

from __future__ import annotations

import numpy as np
import pytest

from audiosim.errors import VectorIndexError
from audiosim.indexes.auto import (
    IndexPlan,
    choose_and_build,
    ivf_nlist,
    lower_bound,
    measure_recall,
    parse_bytes,
    plan_index,
    query_recalls,
    tune,
)
from audiosim.indexes.flat import brute_force
from audiosim.indexes.groundtruth import ExactTopK, recall_at_k
from audiosim.indexes.kinds import load_index, make_index

DIM = 32
SMALL = {"exact_max_n": 500, "graph_max_n": 1500}  # thresholds scaled down to test-sized data


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    c = rng.standard_normal((50, DIM)) * 3
    db = (c[rng.integers(0, 50, 6000)] + rng.standard_normal((6000, DIM))).astype(np.float32)
    ids = np.arange(len(db), dtype=np.int64) + 1_000
    q = (c[rng.integers(0, 50, 80)] + rng.standard_normal((80, DIM))).astype(np.float32)  # fresh draws
    return db, q, ids


def source(ids, db, size=1000):
    return lambda: ((ids[s:s + size], db[s:s + size]) for s in range(0, len(ids), size))


def fetcher(db):
    return lambda want: db[np.asarray(want) - 1_000]


def test_parse_bytes():
    assert parse_bytes("512M") == 512 << 20 and parse_bytes("2G") == 2 << 30 and parse_bytes("1.5GiB") == 3 << 29
    assert parse_bytes("100k") == 102400 and parse_bytes(4096) == 4096 and parse_bytes("7b") == 7
    for bad in ("lots", "-1G", 0, "1Q"):
        with pytest.raises(VectorIndexError, match="memory budget"):
            parse_bytes(bad)


@pytest.mark.parametrize("n", [1_000, 50_000, 1_000_000, 100_000_000])
@pytest.mark.parametrize("budget", ["64M", "512M", "4G", "64G"])
def test_plans_fit_the_budget(n, budget):
    try:
        plan = plan_index(n, 1024, memory_budget=budget, rerank_ok=True)
    except VectorIndexError as e:
        assert "raise --memory-budget" in str(e)
        try:
            plan = plan_index(n, 1024, memory_budget=budget, rerank_ok=True, ondisk_ok=True)
        except VectorIndexError:  # even the coarse centroids exceed it: only for a hopeless budget
            assert n * 1024 * 4 > 1000 * parse_bytes(budget)
            return
        assert plan.ondisk and plan.kind == "ivfpq"
    assert isinstance(plan, IndexPlan) and plan.memory_bytes <= parse_bytes(budget)
    built = plan.make(dim=1024, metric="cosine")
    assert built.estimate_bytes(n, ondisk=plan.ondisk) == plan.memory_bytes
    if plan.kind in ("ivfpq", "ivfsq8", "sq8", "hnswsq"):
        assert built.rerank > 0  # approximate scores are re-ranked when a fetch is available


def test_plan_choices_follow_size_then_memory():
    assert plan_index(10_000, 1024, memory_budget="1G").kind == "flat"
    assert plan_index(80_000, 1024, memory_budget="1G").kind == "hnsw"
    assert plan_index(80_000, 1024, memory_budget="150M").kind == "hnswsq"
    assert plan_index(10 ** 6, 1024, memory_budget="8G").kind == "ivf"
    assert plan_index(10 ** 6, 1024, memory_budget="2G").kind == "ivfsq8"
    pq = plan_index(10 ** 6, 1024, memory_budget="512M", rerank_ok=True)
    assert pq.kind == "ivfpq" and pq.params["m"] == 256 and pq.params["rerank"] == 5
    assert plan_index(10 ** 6, 1024, memory_budget="100M").params["m"] == 64
    assert "rerank" not in plan_index(10 ** 6, 1024, memory_budget="512M").params  # no fetch, no re-ranking
    assert ivf_nlist(10 ** 6) == 2048 and ivf_nlist(100) == 2 and ivf_nlist(1) == 1
    with pytest.raises(VectorIndexError, match="raise --memory-budget, or give a directory"):
        plan_index(10 ** 8, 1024, memory_budget="1G")
    # device="gpu" keeps to kinds FAISS can move to a GPU (not tested on a GPU here)
    assert plan_index(80_000, 1024, memory_budget="1G", gpu=True).kind == "ivf"
    assert plan_index(10 ** 6, 1024, memory_budget="512M", gpu=True).params["m"] == 64


def test_exact_top_k_equals_brute_force_and_excludes_own_ids(data):
    db, _, ids = data
    for metric in ("cosine", "euclidean"):
        truth = ExactTopK(db[:20], k=5, metric=metric, query_ids=ids[:20])
        for s in range(0, len(ids), 777):
            truth.update(ids[s:s + 777], db[s:s + 777])
        scores, got = truth.result()
        ref_scores, ref_pos = brute_force(db, db[:20], 21, metric=metric)
        ref_scores, ref_pos = ref_scores[:, 1:], ref_pos[:, 1:]  # drop each query itself (rank 0)
        np.testing.assert_array_equal(got[:, :5], ids[ref_pos[:, :5]])
        np.testing.assert_allclose(scores[:, :20], ref_scores, rtol=1e-4, atol=1e-4)
        assert not (got == ids[:20, None]).any()


def test_recall_counts_ties_with_the_kth_neighbour():
    # truth: a, b, c tie for the 2nd place; finding c instead of b is right
    t_scores = np.array([[0.9, 0.8, 0.8, 0.8, 0.1]])
    t_ids = np.array([[1, 2, 3, 4, 5]])
    assert recall_at_k(np.array([[1, 3]]), t_scores, t_ids, 2, metric="cosine") == 1.0
    assert recall_at_k(np.array([[1, 5]]), t_scores, t_ids, 2, metric="cosine") == 0.5
    assert recall_at_k(np.array([[4, 3]]), t_scores, t_ids, 2, metric="cosine") == 0.5
    assert recall_at_k(np.array([[5, -1]]), 1 - t_scores, t_ids, 2, metric="euclidean") == 0.0
    # fewer true neighbours than k: recall is over those that exist
    assert recall_at_k(np.array([[7, -1, -1]]), np.array([[0.5, -np.inf, -np.inf]]), np.array([[7, -1, -1]]), 3,
                       metric="cosine") == 1.0


def test_tune_finds_the_smallest_nprobe_reaching_the_target(data):
    db, q, ids = data
    index = make_index("ivf", dim=DIM, nlist=64)
    index.add(ids, db)
    truth = ExactTopK(q, k=10, metric="cosine")
    truth.update(ids, db)
    result = tune(index, q, truth, target_recall=0.97)
    assert result.target_met and result.knob == "nprobe" and index.nprobe == result.value
    assert measure_recall(index, q, truth) == pytest.approx(result.recall)
    assert result.recall >= result.recall_lower >= 0.97
    assert lower_bound(query_recalls(index, q, truth)) == pytest.approx(result.recall_lower)
    if result.value > 1:  # the smallest setting whose lower confidence bound reaches the target
        index.set_knob(result.value - 1)
        assert lower_bound(query_recalls(index, q, truth)) < 0.97
    unreachable = tune(make_index("ivfpq", dim=DIM, nlist=16, m=4).train(db), q, truth, target_recall=1.0)
    assert not unreachable.target_met and unreachable.rerank == 0  # best effort, recorded as such


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_auto_builds_within_budget_and_reaches_the_target(metric, data, tmp_path):
    db, q, ids = data
    flat_bytes = len(ids) * DIM * 4
    budget = flat_bytes // 4  # small data: codebooks and centroids weigh more than at scale
    index = choose_and_build(source(ids, db), n=len(ids), dim=DIM, metric=metric, memory_budget=budget,
                             target_recall=0.95, fetch=fetcher(db), queries=100, **SMALL)
    info = index.build_info
    assert index.KIND == "ivfpq" and info["requested"] == "auto" and info["kind"] == "ivfpq"
    assert index.memory_bytes() <= budget and info["memory_bytes"] == index.memory_bytes()
    assert info["target_met"] and info["measured_recall"] >= info["recall_lower_90"] >= 0.95
    assert info["rerank"] == index.rerank > 0
    assert info["queries"] == 100 and info["train_rows"] > 0 and info["knob"] == "nprobe"
    assert len(index) == len(ids)
    # on queries it never saw, recall@10 with the fetch stays near the target
    res = index.search(q, 10, fetch=fetcher(db))
    ref_scores, ref_pos = brute_force(db, q, 40, metric=metric)
    assert recall_at_k(res.ids, ref_scores, ids[ref_pos], 10, metric=metric) >= 0.9
    sidecar = index.save(tmp_path / "auto", extra={"collection_revision": 2})
    loaded, again = load_index(tmp_path / "auto")
    assert again["build"]["measured_recall"] == info["measured_recall"] and again["build"]["memory_budget"] == budget
    np.testing.assert_array_equal(loaded.search(q, 10, fetch=fetcher(db)).ids, res.ids)
    assert sidecar["trained_for"] == len(ids)


def test_auto_small_collections_are_exact_and_graphs_are_tuned(data):
    db, _, ids = data
    flat = choose_and_build(source(ids[:400], db[:400]), n=400, dim=DIM, **SMALL)
    assert flat.KIND == "flat" and flat.build_info["measured_recall"] == 1.0
    graph = choose_and_build(source(ids[:1200], db[:1200]), n=1200, dim=DIM, target_recall=0.99, queries=60, **SMALL)
    assert graph.KIND == "hnsw" and graph.build_info["knob"] == "ef_search"
    assert graph.build_info["measured_recall"] >= 0.99 and graph.ef_search == graph.build_info["value"]


def test_auto_puts_lists_on_disk_when_memory_is_short(data, tmp_path):
    db, _, ids = data
    index = choose_and_build(source(ids, db), n=len(ids), dim=DIM, memory_budget=60_000, fetch=fetcher(db),
                             directory=tmp_path / "od", queries=50, **SMALL)
    assert index.ondisk and index.build_info["ondisk"] and index.memory_bytes() <= 60_000
    index.save(tmp_path / "od")
    loaded, sidecar = load_index(tmp_path / "od")
    assert loaded.ondisk and sidecar["build"]["ondisk"] and len(loaded) == len(ids)
    with pytest.raises(VectorIndexError, match="memory budget"):
        choose_and_build(source(ids, db), n=len(ids), dim=DIM, memory_budget=60_000, **SMALL)


def test_auto_needs_a_sample_or_a_second_pass(data):
    db, _, ids = data
    one_pass = iter([(ids, db)])
    with pytest.raises(VectorIndexError, match="sample"):
        choose_and_build(one_pass, n=len(ids), dim=DIM, memory_budget=200_000, **SMALL)
    index = choose_and_build(iter([(ids, db)]), n=len(ids), dim=DIM, memory_budget=200_000,
                             sample=(ids[::3], db[::3]), queries=50, **SMALL)
    assert index.KIND == "ivfpq" and len(index) == len(ids)
