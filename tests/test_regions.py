"""Regions: hand-made hits merge into the expected regions (touching and overlapping segments,
one file at a time, gap tolerance, float rounding), the file and none modes, ranking for cosine
(higher is closer) and euclidean (lower is closer), and a union-find oracle on random hits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from audiosim.engine.search.regions import GROUP_MODES, Region, RegionError, group_hits, region_labels


@dataclass(frozen=True)
class H:
    path: str
    offset_s: float
    duration_s: float | None
    score: float


HITS = [
    H("a.wav", 10.0, 2.0, 0.9),   # 0
    H("a.wav", 12.0, 2.0, 0.8),   # 1 touches 0
    H("b.wav", 0.0, 2.0, 0.85),   # 2
    H("a.wav", 11.0, 2.0, 0.7),   # 3 overlaps 0 and 1
    H("a.wav", 20.0, 2.0, 0.6),   # 4 apart
    H("b.wav", 3.0, 2.0, 0.5),    # 5 one second after b's first hit
]


def _summary(regions: list[Region]):
    return [(r.rank, r.path, r.start_s, r.end_s, r.best_score, round(r.mean_score, 6), [HITS.index(h) for h in r.hits])
            for r in regions]


def test_region_mode_merges_touching_and_overlapping_hits_of_one_file():
    regions = group_hits(HITS, mode="region")
    assert _summary(regions) == [
        (1, "a.wav", 10.0, 14.0, 0.9, 0.8, [0, 3, 1]),  # members in time order
        (2, "b.wav", 0.0, 2.0, 0.85, 0.85, [2]),
        (3, "a.wav", 20.0, 22.0, 0.6, 0.6, [4]),
        (4, "b.wav", 3.0, 5.0, 0.5, 0.5, [5]),
    ]
    assert regions[0].best is HITS[0] and regions[0].duration_s == 4.0
    d = regions[0].to_dict()
    assert d["n_hits"] == 3 and d["hits"][1] == {"path": "a.wav", "offset_s": 11.0, "duration_s": 2.0, "score": 0.7}


def test_gap_tolerance_joins_nearby_hits():
    regions = group_hits(HITS, mode="region", gap_s=1.0)
    assert [(r.path, r.start_s, r.end_s) for r in regions] == [("a.wav", 10.0, 14.0), ("b.wav", 0.0, 5.0),
                                                               ("a.wav", 20.0, 22.0)]


def test_file_and_none_modes():
    assert _summary(group_hits(HITS, mode="file")) == [
        (1, "a.wav", 10.0, 22.0, 0.9, 0.75, [0, 3, 1, 4]),
        (2, "b.wav", 0.0, 5.0, 0.85, 0.675, [2, 5]),
    ]
    none = group_hits(HITS, mode="none")
    assert [HITS.index(r.best) for r in none] == [0, 2, 1, 3, 4, 5]  # by score
    assert all(len(r.hits) == 1 for r in none)


def test_euclidean_ranks_the_smallest_distance_first():
    hits = [H("a", 0.0, 2.0, 0.2), H("a", 2.0, 2.0, 0.5), H("c", 0.0, 2.0, 0.1), H("a", 6.0, 2.0, 0.05)]
    regions = group_hits(hits, mode="region", metric="euclidean")
    assert [(r.path, r.start_s, r.end_s, r.best_score, r.mean_score) for r in regions] == [
        ("a", 6.0, 8.0, 0.05, 0.05), ("c", 0.0, 2.0, 0.1, 0.1), ("a", 0.0, 4.0, 0.2, 0.35)]
    assert group_hits(hits, mode="region", metric="l2")[0].best is hits[3]  # the alias works too


def test_chains_rounding_missing_durations_and_ties():
    hits = [H("x", 0.0, 2.0, 0.5), H("x", 1.5, 2.0, 0.5), H("x", 3.5, 1.5, 0.4), H("x", 0.5, 0.5, 0.3),
            H("x", 0.1 * 3 + 5, 1.0, 0.2), H("y", 1.0, None, 0.1), H("y", 1.0, 0.0, 0.1)]
    regions = group_hits(hits)
    # 5.3 does not touch 5.0; the chain 0-2, 1.5-3.5, 3.5-5 (and 0.5-1 inside it) is one region
    assert [(r.path, r.start_s, r.end_s, len(r.hits)) for r in regions] == [("x", 0.0, 5.0, 4), ("x", 5.3, 6.3, 1),
                                                                           ("y", 1.0, 1.0, 2)]
    assert regions[0].best is hits[0]  # equal best scores: the better-ranked hit
    assert group_hits([H("x", 0.0, 0.1 * 3, 1.0), H("x", 0.3, 1.0, 0.9)])[0].end_s == 1.3  # float rounding absorbed


def test_region_labels_over_arrays():
    labels = region_labels(["a", "a", "b", "a", "a", "b"], np.array([10, 12, 0, 11, 20, 3.0]), np.full(6, 2.0))
    assert labels.tolist() == [0, 0, 1, 0, 2, 3]
    assert region_labels(["a", "b"], np.zeros(2), np.ones(2), mode="file").tolist() == [0, 1]
    assert region_labels(["a", "a"], np.zeros(2), np.ones(2), mode="none").tolist() == [0, 1]


def test_bad_input_is_a_clear_error():
    with pytest.raises(RegionError, match="unknown grouping 'segments'; use one of region, file, none"):
        group_hits(HITS, mode="segments")
    with pytest.raises(RegionError, match="unknown grouping"):
        group_hits([], mode="nope")
    assert group_hits([]) == [] and GROUP_MODES == ("region", "file", "none")
    with pytest.raises(RegionError, match="3 files for 2 hits"):
        region_labels(["a", "b", "c"], np.zeros(2), np.ones(2))
    with pytest.raises(RegionError, match="durations finite and >= 0"):
        region_labels(["a"], np.zeros(1), -np.ones(1))


def _oracle(files, starts, ends):
    """Union-find over every pair of same-file hits whose spans touch or overlap."""
    parent = list(range(len(files)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(files)):
        for j in range(i + 1, len(files)):
            if files[i] == files[j] and starts[j] <= ends[i] and starts[i] <= ends[j]:
                parent[find(j)] = find(i)
    return [find(i) for i in range(len(files))]


@pytest.mark.parametrize("seed", range(20))
def test_region_partition_matches_a_union_find_oracle(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    files = [f"f{k}" for k in rng.integers(0, 3, n)]
    starts = rng.integers(0, 60, n).astype(float)  # whole seconds: touching is exact
    durs = rng.integers(0, 4, n).astype(float)
    labels = region_labels(files, starts, durs)
    oracle = _oracle(files, starts, starts + durs)
    same = labels[:, None] == labels[None, :]
    same_oracle = np.array(oracle)[:, None] == np.array(oracle)[None, :]
    np.testing.assert_array_equal(same, same_oracle)
    regions = group_hits([H(f, s, d, float(rng.random())) for f, s, d in zip(files, starts, durs)])
    assert sum(len(r.hits) for r in regions) == n and len(regions) == len(set(labels.tolist()))
    assert all(r.best_score >= nxt.best_score for r, nxt in zip(regions, regions[1:]))
