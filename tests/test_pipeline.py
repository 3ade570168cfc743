"""The pipeline's stages: worker processes give exactly what threads give, and a dying worker costs one file.

* ``ProcessStage`` (decode + embed in worker processes) yields, for every file and in input
  order, the same sha256, duration, rows (bit for bit) and failure records as ``ThreadStage``
  (decode in threads, embed here) -- on good files and on bad ones (empty, text, NaN samples).
* ``index_folder(processes=2)`` stores the same ids, vectors and metadata as ``processes=0``,
  and a run interrupted mid-way in process mode resumes without loss or duplicates.
* A worker that dies on one file (a decoder crash, the OOM killer) costs that file only: it is
  a ``WorkerDied`` failure and the files queued behind it are embedded by a fresh worker.
* A worker that cannot build its mapper stops the run with that error; ``auto`` picks worker
  processes only when they pay; a worker that loads another model than the collection's refuses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosim.engine.models.embedders import make_embedder
from audiosim.engine.ingest.indexer import AUTO_PROCESS_MIN_FILES, MapperRecipe, auto_processes, index_folder
from audiosim.engine.audio.scan import scan_folder
from audiosim.engine.ingest.mappers import EmbedMapper
from audiosim.engine.ingest.pipeline import ListSink, ProcessStage, ThreadStage, run_pipeline
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.engine.store.store import CollectionStore
from audiosim.errors import AudiosimError, CollectionMismatchError

SR = 16000


def recipe(**kw) -> MapperRecipe:
    return MapperRecipe(embedder="logmel", pooling=PoolingSpec.parse("mu+sigma"), **kw)


class DieOn:
    """A mapper factory whose mapper kills its worker process on one file (as a decoder crash would)."""

    def __init__(self, name: str) -> None:
        self.name, self.inner = name, recipe()

    def __call__(self):
        mapper = self.inner()

        def map_or_die(d):
            if Path(d.item.path).name == self.name:
                os._exit(7)
            return mapper(d)

        return map_or_die


class Unbuildable:
    def __call__(self):
        return make_embedder("no-such-embedder")


@pytest.fixture
def mixed_folder(demo_folder, tmp_path) -> Path:
    """The demo sounds plus files that fail: empty, not audio, NaN samples."""
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(demo_folder, folder)
    bad = folder / "bad"
    bad.mkdir()
    (bad / "empty.wav").write_bytes(b"")
    (bad / "notes.wav").write_text("not audio\n" * 10)
    nan = np.sin(np.arange(SR) / 10).astype(np.float32)
    nan[::50] = np.nan
    sf.write(bad / "nan.wav", nan, SR, subtype="FLOAT")
    return folder


def run_stage(stage, items) -> tuple[list, object]:
    sink = ListSink()
    stats = run_pipeline(items, sample_rate=SR, sink=sink, stage=stage)
    return list(zip(sink.items, sink.results)), stats


def test_processes_yield_what_threads_yield_in_order(mixed_folder):
    items = list(scan_folder(mixed_folder).items)
    threads, t_stats = run_stage(ThreadStage(recipe()(), workers=2), items)
    procs, p_stats = run_stage(ProcessStage(recipe(), processes=2, ahead=2), items)
    assert len(threads) == len(items) - 3 and [it for it, _ in procs] == [it for it, _ in threads]
    for (_, a), (_, b) in zip(threads, procs):
        assert a.path == b.path and a.content_sha256 == b.content_sha256 and a.label == b.label
        np.testing.assert_array_equal(a.offset_s, b.offset_s)
        np.testing.assert_array_equal(a.duration_s, b.duration_s)
        assert a.embedding.dtype == b.embedding.dtype == np.float32 and np.array_equal(a.embedding, b.embedding)
    assert p_stats.failures == t_stats.failures
    assert {Path(f["path"]).name: f["error"] for f in p_stats.failures} == {
        "empty.wav": "AudioDecodeError", "notes.wav": "AudioDecodeError", "nan.wav": "NonFiniteAudioError"}
    assert p_stats.audio_seconds == pytest.approx(t_stats.audio_seconds)


def test_a_dying_worker_costs_one_file_and_the_run_goes_on(demo_folder):
    items = list(scan_folder(demo_folder).items)
    victim = Path(items[5].path).name
    procs, stats = run_stage(ProcessStage(DieOn(victim), processes=2, ahead=3), items)
    assert [it.path for it, _ in procs] == [it.path for it in items if Path(it.path).name != victim]
    (fail,) = stats.failures
    assert Path(fail["path"]).name == victim and fail["error"] == "WorkerDied" and "exit code 7" in fail["message"]


def test_a_worker_that_cannot_load_its_model_stops_the_run(demo_folder):
    items = list(scan_folder(demo_folder).items)[:3]
    with pytest.raises(AudiosimError, match="could not prepare its model.*no-such-embedder"):
        run_stage(ProcessStage(Unbuildable(), processes=1), items)


def test_index_folder_in_processes_equals_threads_and_resumes(demo_folder, tmp_path):
    index_folder(demo_folder, tmp_path / "threads", embedder="logmel", processes=0, flush_every=4)
    seen = []

    def stop_after_nine(item):
        seen.append(item)
        if len(seen) == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index_folder(demo_folder, tmp_path / "procs", embedder="logmel", processes=2, flush_every=4,
                     on_file=stop_after_nine)
    assert len(CollectionStore.open(tmp_path / "procs")) == 8  # two committed parts of four
    report = index_folder(demo_folder, tmp_path / "procs", processes=2, flush_every=4)
    assert report.unchanged == 8 and report.embedded == 12 and report.engine == "local (2 processes)"
    a, b = CollectionStore.open(tmp_path / "threads"), CollectionStore.open(tmp_path / "procs")
    cols = ("path", "content_sha256", "offset_s", "duration_s", "label")
    assert a.records(cols) == b.records(cols)  # same ids in the same order, same metadata
    (ia, A), (ib, B) = a.embeddings(), b.embeddings()
    assert np.array_equal(ia, ib) and np.array_equal(A, B)


def test_auto_processes_only_where_they_pay(monkeypatch):
    from audiosim.engine.ingest import indexer as ingest

    monkeypatch.setattr(ingest, "usable_cores", lambda: 4)
    assert auto_processes("auto", files=AUTO_PROCESS_MIN_FILES - 1) == 0
    assert auto_processes("auto", files=AUTO_PROCESS_MIN_FILES) == 4
    assert auto_processes("auto", files=5000, device="cuda") == 0  # one GPU model, not one per core
    assert auto_processes(3, files=2) == 2 and auto_processes(0, files=100) == 0
    monkeypatch.setattr(ingest, "usable_cores", lambda: 1)
    assert auto_processes("auto", files=5000) == 0
    for bad in ("many", -1):
        with pytest.raises(AudiosimError, match="processes must be 'auto' or a number"):
            auto_processes(bad, files=10)


def test_a_worker_with_another_model_refuses_to_embed():
    good = recipe()().embedder.info
    assert isinstance(recipe(expect=good)(), EmbedMapper)
    other = type(good)(**{**good.to_dict(), "weights_sha256": "0" * 64})
    with pytest.raises(CollectionMismatchError, match="same weights"):
        recipe(expect=other)()


def _batching_mapper(calls: list, *, poison: float | None = None) -> EmbedMapper:
    """A logmel EmbedMapper whose embedder says it batches windows; it records each embed_batch group, and a
    waveform starting with ``poison`` makes it fail (a batch holding it fails as a whole)."""
    base = make_embedder("logmel")

    class Batching(type(base)):
        BATCHES_WINDOWS = True

        def embed_frames(self, waveform):
            if poison is not None and waveform.size and waveform[0] == np.float32(poison):
                raise ValueError("synthetic poisoned waveform")
            return super().embed_frames(waveform)

        def embed_batch(self, waveforms, *, scores=False):
            calls.append(len(waveforms))
            return [self.embed_frames(w) for w in waveforms]

    base.__class__ = Batching
    return EmbedMapper(base, PoolingSpec.parse("mu+sigma"))


def test_a_batching_mapper_gets_groups_and_yields_what_one_by_one_yields(mixed_folder):
    items = list(scan_folder(mixed_folder).items)
    plain, p_stats = run_stage(ThreadStage(recipe()(), workers=2), items)
    calls: list = []
    batched, b_stats = run_stage(ThreadStage(_batching_mapper(calls), workers=2, batch_files=3), items)
    assert calls and max(calls) == 3 and sum(calls) == len(plain)  # groups of up to 3; the bad files never batched
    assert [it for it, _ in batched] == [it for it, _ in plain]
    for (_, a), (_, b) in zip(plain, batched):
        assert a.path == b.path and a.content_sha256 == b.content_sha256
        np.testing.assert_array_equal(a.offset_s, b.offset_s)
        assert np.array_equal(a.embedding, b.embedding)
    assert b_stats.failures == p_stats.failures
    calls.clear()
    run_stage(ThreadStage(_batching_mapper(calls), workers=2, batch_files=64, batch_seconds=1.5), items)
    assert max(calls) < 64  # the audio a group holds is bounded too


def test_a_file_that_fails_its_batch_fails_alone(tmp_path):
    folder = tmp_path / "synthetic"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        x = (0.1 * rng.standard_normal(SR)).astype(np.float32)
        if i == 3:
            x[0] = np.float32(0.5)  # the poisoned file
        sf.write(folder / f"clip{i}.wav", x, SR, subtype="FLOAT")
    items = list(scan_folder(folder).items)
    calls: list = []
    out, stats = run_stage(ThreadStage(_batching_mapper(calls, poison=0.5), workers=2, batch_files=4), items)
    assert calls == [4, 3]
    assert sorted(Path(it.path).name for it, _ in out) == [f"clip{i}.wav" for i in range(7) if i != 3]
    assert [(Path(f["path"]).name, f["error"]) for f in stats.failures] == [("clip3.wav", "ValueError")]
