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
