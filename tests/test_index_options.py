"""IndexOptions: index_folder's options as one frozen value, checked when made (no index built to check a kind)."""

from __future__ import annotations

import dataclasses
import sys

import pytest

import audiosim
from audiosim.engine.ingest.options import IndexOptions, parse_processes
from audiosim.errors import AudiosimError, InvalidOptionError, VectorIndexError
from audiosim.indexes.kinds import check_kind


def test_defaults_and_replace_are_frozen_values():
    o = IndexOptions()
    assert (o.embedder, o.processes, o.flush_every, o.engine, o.compact) == (None, "auto", 64, "local", True)
    p = o.replace(embedder="logmel", flush_every="8", processes="3")
    assert (p.embedder, p.flush_every, p.processes) == ("logmel", 8, 3) and o.embedder is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.embedder = "yamnet"
    with pytest.raises(TypeError):
        o.replace(no_such_option=1)
    assert "embedder" in IndexOptions.names() and audiosim.IndexOptions is IndexOptions


@pytest.mark.parametrize("changes, match", [
    ({"flush_every": 0}, "flush-every must be at least 1"),
    ({"workers": "x"}, "workers must be at least 1"),
    ({"engine": "spark"}, "engine must be one of"),
    ({"processes": -1}, "processes must be 'auto' or a number"),
    ({"processes": "many"}, "processes must be 'auto' or a number"),
    ({"processes": 1.5}, "processes must be 'auto' or a number"),
])
def test_bad_values_fail_when_made(changes, match):
    with pytest.raises(InvalidOptionError, match=match):
        IndexOptions(**changes)
    assert issubclass(InvalidOptionError, AudiosimError)


def test_parse_processes_once():
    assert parse_processes("auto") == "auto" and parse_processes("0") == 0 and parse_processes(4) == 4
    with pytest.raises(InvalidOptionError, match="--processes must"):
        parse_processes("two", option="--processes")


def test_index_kind_checked_without_building_an_index(monkeypatch):
    # importing faiss now fails: nothing may build an index. setitem alone restores the loaded module afterwards
    # (popping it first would make the next test import faiss again and wrap its classes twice: RecursionError)
    monkeypatch.setitem(sys.modules, "faiss", None)
    IndexOptions(index_kind="hnsw", index_params={"m": 16, "ef_search": 32})
    IndexOptions(index_kind="auto", index_params={"memory_budget": 1 << 30, "target_recall": 0.9})
    with pytest.raises(VectorIndexError, match="unknown index kind 'kd'"):
        IndexOptions(index_kind="kd")
    with pytest.raises(VectorIndexError, match="bad parameters for the hnsw index.*nprobe"):
        IndexOptions(index_kind="hnsw", index_params={"nprobe": 4})
    with pytest.raises(VectorIndexError, match="auto index kind takes memory_budget and target_recall, not m"):
        check_kind("auto", {"m": 4})


def test_index_folder_takes_options_and_keyword_overrides(tmp_path, demo_folder):
    base = IndexOptions(embedder="logmel", flush_every=2, compact=False)
    a = audiosim.index_folder(demo_folder, tmp_path / "a", options=base)
    b = audiosim.index_folder(demo_folder, tmp_path / "b", embedder="logmel", flush_every=2, compact=False)
    c = audiosim.index_folder(demo_folder, tmp_path / "c", options=base, flush_every=64)  # an override wins
    assert a.vectors == b.vectors == c.vectors > 0 and a.parts == b.parts > c.parts == 1
    with pytest.raises(InvalidOptionError, match="flush-every"):
        audiosim.index_folder(demo_folder, tmp_path / "d", options=base, flush_every=0)
    assert not (tmp_path / "d").exists()  # refused before any work


def test_metric_parsed_once_into_the_enum():
    from audiosim.errors import UnknownMetricError
    from audiosim.indexes.flat import FlatIndex
    from audiosim.indexes.vectors import Metric

    o = IndexOptions(metric="L2")
    assert o.metric is Metric.EUCLIDEAN and o.metric == "euclidean" and f"{o.metric}" == "euclidean"
    assert Metric.parse(Metric.COSINE) is Metric.COSINE and Metric.COSINE.higher_is_closer
    assert not Metric.EUCLIDEAN.higher_is_closer and str(Metric.EUCLIDEAN) == "euclidean"
    with pytest.raises(UnknownMetricError, match="unknown distance 'dot'; use one of cosine, euclidean"):
        IndexOptions(metric="dot")
    with pytest.raises(VectorIndexError):  # the index's own contract: its errors are VectorIndexErrors
        FlatIndex(dim=3, metric="manhattan")
    assert issubclass(UnknownMetricError, InvalidOptionError)
