"""``scripts/bench_scale.py`` end to end at a tiny size on its synthetic Gaussian corpus: the JSON it prints,
the collection it writes through the store, and its ground truth (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from audiosim.engine.store.store import CollectionStore
from audiosim.indexes.auto import parse_bytes

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_scale.py"
TINY = ["--n", "3000", "--dim", "64", "--source", "gaussian", "--queries", "40", "--warmup", "5",
        "--part-rows", "1000", "--memory-budget", "300KiB"]


def bench(workdir: Path, *extra: str, ok: bool = True) -> dict | str:
    proc = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--workdir", str(workdir), *extra],
                          capture_output=True, text=True, timeout=600)
    if not ok:
        assert proc.returncode != 0
        return proc.stderr
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_measures_search_through_a_written_collection(tmp_path):
    out = bench(tmp_path)
    assert (out["n"], out["dim"], out["source"], out["index_kind"], out["k"]) == (3000, 64, "gaussian", "auto", 10)
    assert out["memory_budget"] == parse_bytes("300KiB")
    corpus = out["corpus"]
    assert corpus["synthetic"] and corpus["stored_rows"] == 3000 and corpus["parts"] == 3
    assert corpus["queries_in_corpus"] == 0

    s = out["search"]
    assert s["timed_queries"] == 40 and s["warmup_queries"] == 5
    assert s["threads"] == {"faiss": 1, "blas": 1}
    assert 0.0 <= s["recall_at_10_min"] <= s["recall_at_10"] <= 1.0
    assert s["recall_at_10"] >= 0.8  # auto tunes to 0.95 on held-out rows; far below means a broken measurement
    lat = s["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["max"] and s["qps"] > 0
    idx = s["index"]
    assert idx["saved_and_current"] and idx["count"] == 3000
    assert idx["auto"]["requested"] == "auto" and idx["auto"]["kind"] == idx["kind"]
    assert idx["kind"] != "flat" and idx["params"]["rerank"] > 0  # 300 KiB is below the float vectors: codes + re-rank
    assert 0 < idx["memory_bytes"] <= out["memory_budget"] and idx["file_bytes"] > 0
    rss = s["rss"]
    assert 0 < rss["before_open_bytes"] <= rss["peak_bytes"]
    assert rss["collection_bytes"] == rss["after_queries_bytes"] - rss["before_open_bytes"]
    assert len(s["load_avg_start"]) == len(s["load_avg_end"]) == 3
    cache = s["vector_cache"]
    assert cache["mode"] == "warm" and cache["warm_step"]["rows"] == 3000
    for key in ("resident_fraction_before", "resident_fraction_after"):  # None where mincore is not available
        assert cache[key] is None or 0.0 <= cache[key] <= 1.0
    for step in ("write", "index_build"):
        assert out[step]["seconds"] >= 0 and out[step]["peak_rss_bytes"] > 0

    # the collection is a real one, written part by part with vector files
    root = Path(out["collection"])
    coll = CollectionStore.open(root)
    assert len(coll) == 3000 and len(coll.manifest.parts) == 3 and coll.manifest.index_fresh
    assert all(p.has_vectors and (root / p.name).with_suffix(".vec").is_file() for p in coll.manifest.parts)

    # its ground truth is the exact top-10 over the stored vectors, by stored id
    ids, X = coll.embeddings()
    d = root.parent
    q = np.load(d / "queries.npy")
    truth = np.load(d / "truth.npz")["ids"][:, :10]
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    exact = ids[np.argsort(-(qn @ xn.T), axis=1, kind="stable")[:, :10]]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, truth)]) >= 0.99  # float ties aside


def test_phases_and_reuse(tmp_path):
    assert "--phase prepare" in bench(tmp_path, "--phase", "search", ok=False)
    first = bench(tmp_path, "--phase", "prepare")
    assert first["steps"]["index"]["was_current"] is False
    again = bench(tmp_path, "--phase", "prepare", "--reuse")
    assert again["steps"]["write"] == first["steps"]["write"]  # the collection was kept
    assert again["steps"]["index"]["reused"] is True  # and its index, built for the same settings
    out = bench(tmp_path, "--phase", "search")
    assert out["index_build"]["index_dir"] == first["steps"]["index"]["index_dir"]
    assert out["search"]["timed_queries"] == 40
    rebuilt = bench(tmp_path, "--phase", "prepare", "--reuse", "--rebuild-index")
    assert rebuilt["steps"]["write"] == first["steps"]["write"] and rebuilt["steps"]["index"]["was_current"] is False
    assert rebuilt["steps"]["index"]["index_dir"] != first["steps"]["index"]["index_dir"]
    assert rebuilt["steps"]["index"]["peak_anon_bytes"] > 0
    out = bench(tmp_path, "--phase", "search", "--vector-cache", "as-is")
    assert out["index_build"]["index_dir"] == rebuilt["steps"]["index"]["index_dir"]
    assert out["search"]["vector_cache"]["mode"] == "as-is" and out["search"]["vector_cache"]["warm_step"] is None
    assert out["search"]["timed_queries"] == 40
    assert "--phase prepare" in bench(tmp_path, "--phase", "search", "--memory-budget", "1MiB", ok=False)  # other index
    assert "memory budget" in bench(tmp_path, "--memory-budget", "lots", ok=False)
