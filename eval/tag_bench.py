"""Tag search on ESC-50: precision@10 of ranking clips by an AudioSet class score.

For every ESC-50 category with an AudioSet counterpart (``eval/esc50_audioset.csv``: one line per
category, the AudioSet display names it maps to, or none), all clips are ranked by their score for
that category -- the maximum of the mapped classes' clip scores -- and precision@k is the fraction
of the top ``k`` (default 10) clips that belong to the category (ties: lower clip index first). The
figure reported is the mean over the mapped categories; unmapped ones are listed, not scored.

A clip's class scores pool its frame scores with :func:`audiosim.engine.models.tags.pool_scores` (``max``,
the pooling a collection stores tags with, or ``mean``). ``top_n`` restricts the ranking to what a
collection keeps: a clip's score for a class counts only when the class is among its ``top_n``
best classes (``audiosim query --tag`` ranks stored tags), clips without it rank last.

The scoring functions are numpy only; :func:`esc50_class_scores` runs an embedder (passed in, so
this module imports no framework) over the clips through the ingest pipeline and caches the
[2000, C] scores in the ESC-50 benchmark cache.
Run: ``audiosim bench --tags`` (or ``python -m audiosim.eval.tag_bench``); it prints JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosim.engine.ingest.pipeline import FileItem, ListSink, run_pipeline
from audiosim.engine.models.embedders import make_embedder
from audiosim.engine.models.tags import SCORE_POOLINGS, TOP_N, ClassMap, pool_scores, top_tags
from audiosim.errors import DatasetError
from audiosim.eval.esc50 import load_esc50
from audiosim.eval.esc50_cache import bench_cache_root, dataset_key, embedder_key
from audiosim.eval.report import write_results
from audiosim.files import write_npz_atomic

MAPPING_FILE = Path(__file__).with_name("esc50_audioset.csv")
K = 10


@dataclass(frozen=True)
class CategoryMapping:
    """One line of the mapping file."""

    target: int
    category: str
    audioset: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class TagBenchResult:
    """Precision@k per mapped category and its mean."""

    k: int
    per_category: dict
    mean_precision: float
    unmapped: tuple[str, ...]
    top_n: int | None = None

    def to_dict(self) -> dict:
        return {"k": self.k, "top_n": self.top_n, "mean_precision_at_k": self.mean_precision,
                "n_mapped": len(self.per_category), "unmapped": list(self.unmapped),
                "per_category": dict(self.per_category)}


def load_mapping(path: str | Path | None = None) -> list[CategoryMapping]:
    """The ESC-50 -> AudioSet mapping, one entry per category in target order."""
    p = Path(path) if path is not None else MAPPING_FILE
    try:
        lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    except OSError as e:
        raise DatasetError(f"cannot read the ESC-50 -> AudioSet mapping {p}: {e}") from e
    rows = list(csv.DictReader(lines))
    if not rows or not {"target", "category", "audioset"} <= set(rows[0]):
        raise DatasetError(f"{p}: expected a CSV with columns target,category,audioset[,note]")
    out = []
    for r in rows:
        names = tuple(n.strip() for n in (r["audioset"] or "").split(";") if n.strip())
        out.append(CategoryMapping(int(r["target"]), r["category"].strip(), names, (r.get("note") or "").strip()))
    if [m.target for m in out] != list(range(len(out))):
        raise DatasetError(f"{p}: targets must be 0..{len(out) - 1} in order, one line per category")
    return out


def mapped_columns(mapping: Sequence[CategoryMapping], class_names: Sequence[str]) -> dict[int, list[int]]:
    """target -> score columns of its AudioSet classes (mapped categories only); unknown names are an error."""
    index = {n: i for i, n in enumerate(class_names)}
    missing = sorted({n for m in mapping for n in m.audioset if n not in index})
    if missing:
        raise DatasetError(f"the mapping names classes the model does not have: {missing}; use exact display names")
    return {m.target: [index[n] for n in m.audioset] for m in mapping if m.audioset}


def restrict_to_top_n(scores: np.ndarray, top_n: int) -> np.ndarray:
    """``scores`` with every class outside a row's ``top_n`` best set to -inf (what stored tags keep)."""

    ids, vals = top_tags(scores, n=top_n)
    out = np.full(scores.shape, -np.inf, dtype=np.float64)
    np.put_along_axis(out, ids.astype(np.int64), vals.astype(np.float64), axis=1)
    return out


def precision_at_k(scores: np.ndarray, targets: np.ndarray, mapping: Sequence[CategoryMapping],
                   class_names: Sequence[str], *, k: int = K, top_n: int | None = None) -> TagBenchResult:
    """Tag-search precision@k per mapped category, from clip class scores [clips, C] and clip targets [clips]."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(targets).reshape(-1)
    if s.ndim != 2 or s.shape[0] != y.size or s.shape[1] != len(class_names):
        raise DatasetError(f"scores {s.shape} do not match {y.size} targets and {len(class_names)} class names")
    if top_n is not None:
        s = restrict_to_top_n(s, top_n)
    per = {}
    for target, cols in mapped_columns(mapping, class_names).items():
        category_score = s[:, cols].max(axis=1)
        top = np.lexsort((np.arange(y.size), -category_score))[:k]
        per[mapping[target].category] = float(np.mean(y[top] == target))
    unmapped = tuple(m.category for m in mapping if not m.audioset)
    mean = float(np.mean(list(per.values()))) if per else float("nan")
    return TagBenchResult(k=k, per_category=per, mean_precision=mean, unmapped=unmapped, top_n=top_n)


def esc50_class_scores(esc, embedder, *, how: str = "max", cache: str | Path | None = None,
                       progress: bool = False, workers: int = 2) -> np.ndarray:
    """Clip class scores [clips, C] of an ESC-50 dataset, frame scores pooled with ``how`` (max or mean).

    The clips run through the ingest pipeline (:mod:`audiosim.engine.ingest.pipeline`). ``cache`` (a
    ``.npz`` file) keeps both poolings with the class map's sha256 and the clip file names; it is
    reused when they match, else recomputed and overwritten.
    """

    if how not in SCORE_POOLINGS:
        raise DatasetError(f"unknown class-score pooling {how!r}; use one of {', '.join(SCORE_POOLINGS)}")
    class_map = ClassMap.of(embedder)
    if class_map is None:
        raise DatasetError(f"the {embedder.info.name} embedder has no classifier head; use yamnet or panns")
    key = np.array([class_map.sha256, embedder.info.weights_sha256 or "", *esc.filenames])
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as z:
            if how in z and "key" in z and z["key"].tolist() == key.tolist():
                return z[how]

    def clip_scores(d) -> dict:
        _, _, frame_scores = embedder.embed_frames_with_scores(d.waveform())
        return {h: pool_scores(frame_scores, how=h)[0] for h in SCORE_POOLINGS}

    sink = ListSink()
    stats = run_pipeline([FileItem(path=c.path) for c in esc.clips], sample_rate=embedder.info.sample_rate,
                         mapper=clip_scores, sink=sink, workers=workers, progress=progress, desc="ESC-50 class scores")
    if stats.failures:
        first = stats.failures[0]
        raise DatasetError(f"{len(stats.failures)} ESC-50 clips could not be scored (e.g. {first['path']}: "
                           f"{first['message']}); fix the files and run again")
    pooled = {h: np.stack([r[h] for r in sink.results]).astype(np.float32) for h in SCORE_POOLINGS}
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        write_npz_atomic(Path(cache), key=key, **pooled)
    return pooled[how]


def run_tag_benchmark(*, embedder: str = "yamnet", weights: str | None = None, embedder_options: dict | None = None,
                      esc50: str | None = None, cache: str | None = None, out: str | Path | None = None, k: int = K,
                      top_n: int | None = None, pooling: str = "max", mapping: str | None = None,
                      progress: bool = True) -> dict:
    """Tag-search precision@k on ESC-50 (see the module docstring); writes ``out/results.json`` when ``out`` is given.

    ``top_n`` (default: :data:`audiosim.engine.models.tags.TOP_N`) scores the ranking a collection can
    do from its stored tags; the full-score ranking is reported beside it. Clip scores are cached
    in the ESC-50 benchmark cache (``cache``, as for ``audiosim bench``).
    """

    esc = load_esc50(esc50)
    model = make_embedder(embedder, weights=weights, options=embedder_options)
    cache_file = bench_cache_root(cache) / dataset_key(esc) / embedder_key(model.info) / "class_scores.npz"
    scores = esc50_class_scores(esc, model, how=pooling, cache=cache_file, progress=progress)
    names = model.class_names()
    table = load_mapping(mapping)
    n = TOP_N if top_n is None else int(top_n)
    report = {"benchmark": "esc50-tag-search", "embedder": model.info.to_dict(), "n_clips": len(esc), "pooling": pooling,
              "k": k, "cache": str(cache_file),
              "stored_top_n": precision_at_k(scores, esc.targets, table, names, k=k, top_n=n).to_dict(),
              "full_scores": precision_at_k(scores, esc.targets, table, names, k=k).to_dict()}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_results(out, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--esc50", default=None, help="ESC-50 root (default: $ESC50_ROOT)")
    ap.add_argument("--embedder", default="yamnet", help="an embedder with a classifier head (yamnet, panns)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--cache", default=None, help="the benchmark cache folder (as `audiosim bench --cache`)")
    ap.add_argument("--pooling", default="max", help="clip score from frame scores: max (default) or mean")
    ap.add_argument("--k", type=int, default=K)
    ap.add_argument("--top-n", type=int, default=None, help="stored tags per clip for the collection-side ranking [10]")
    ap.add_argument("--mapping", default=None, help=f"mapping CSV (default {MAPPING_FILE.name})")
    args = ap.parse_args(argv)

    report = run_tag_benchmark(embedder=args.embedder, weights=args.weights, esc50=args.esc50, cache=args.cache,
                               k=args.k, top_n=args.top_n, pooling=args.pooling, mapping=args.mapping)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
