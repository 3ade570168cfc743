"""The Python API end to end on synthetic audio: index_folder -> open_collection -> Searcher.

Proves: every query kind (clip, waveform, vector, id) finds the same-kind clips; a batch equals
the singles; each filter returns k hits whenever at least k items match, and only matching ones
(checked against a brute-force oracle over the stored vectors); exclude_same_file; time ranges;
conflicting options are refused with a message naming the fix while omitted ones take the
collection's values; delete by id and by path; a searcher follows a new revision by itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audiosim
from audiosim.errors import AudiosimError, CollectionMismatchError

KINDS = ("tone", "chirp", "noise", "clicks", "hum")


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    from audiosim.engine.audio.synth import write_demo_folder

    base = tmp_path_factory.mktemp("api")
    folder = base / "sounds"
    write_demo_folder(folder, per_kind=6, seed=3)
    report = audiosim.index_folder(folder, base / "coll", embedder="logmel", pooling="mu+sigma")
    return folder, base / "coll", report


def test_import_is_cheap_and_exports_the_api():
    code = ("import sys, audiosim; names = [audiosim.index_folder, audiosim.open_collection, audiosim.Searcher, "
            "audiosim.Hit, audiosim.IngestReport, audiosim.Collection]; "
            "bad = [m for m in ('tensorflow', 'torch', 'faiss', 'pyarrow', 'librosa') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_index_folder_report_and_collection_properties(indexed):
    folder, root, report = indexed
    assert isinstance(report, audiosim.IngestReport)
    assert report.embedded == 30 and report.new == 30 and report.vectors == 30 and not report.failures
    coll = audiosim.open_collection(root)
    assert len(coll) == 30 and coll.embedder.name == "logmel" and coll.pooling.name == "mu+sigma"
    assert coll.metric == "cosine" and coll.segment_s is None and coll.index_kind == "flat" and coll.postprocess is None
    assert coll.revision >= 1 and coll.sources == (str(folder.resolve()),) and coll.manifest.index_fresh


def test_every_query_kind_ranks_the_same_kind_first(indexed):
    folder, root, _ = indexed
    s = audiosim.open_collection(root).searcher()
    for kind in KINDS:
        clip = sorted((folder / kind).iterdir())[2]
        by_clip = s.search(clip=clip, k=4)
        assert all(isinstance(h, audiosim.Hit) for h in by_clip)
        assert by_clip[0].path == str(clip.resolve()) and by_clip[0].score == pytest.approx(1.0, abs=1e-5)
        assert [h.label for h in by_clip] == [kind] * 4
        wave, sr = sf.read(clip, dtype="float32")
        by_wave = s.search(waveform=wave, sample_rate=sr, k=4)
        assert [h.id for h in by_wave] == [h.id for h in by_clip]
        by_id = s.search(id=by_clip[0].id, k=4)
        assert [h.id for h in by_id] == [h.id for h in by_clip]
        stored = audiosim.open_collection(root).vectors([by_clip[0].id])[0]
        by_vec = s.search(vector=stored, k=4)
        assert [h.id for h in by_vec] == [h.id for h in by_clip]


def test_a_batch_equals_the_singles(indexed):
    folder, root, _ = indexed
    s = audiosim.open_collection(root).searcher()
    clips = [sorted((folder / k).iterdir())[0] for k in KINDS]
    batch = s.search(clip=clips, k=5)
    assert len(batch) == len(clips)
    for clip, hits in zip(clips, batch):
        assert [(h.id, round(h.score, 5)) for h in hits] == [(h.id, round(h.score, 5)) for h in s.search(clip=clip, k=5)]
    ids = [row[0].id for row in batch]
    assert [[h.id for h in r] for r in s.search(id=ids, k=3)] == [[h.id for h in s.search(id=i, k=3)] for i in ids]
    V = audiosim.open_collection(root).vectors(ids)
    assert [[h.id for h in r] for r in s.search(vector=V, k=3)] == [[h.id for h in s.search(vector=v, k=3)] for v in V]


def _oracle(coll, query_vec, allowed_ids, k):
    """Brute-force cosine ranking over the allowed stored vectors."""
    ids, X = coll.embeddings()
    keep = np.isin(ids, allowed_ids)
    ids, X = ids[keep], X[keep].astype(np.float64)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    q = query_vec / np.linalg.norm(query_vec)
    order = np.argsort(-(X @ q), kind="stable")[:k]
    return ids[order].tolist()


def test_filters_return_k_matching_hits_inside_the_index(indexed):
    folder, root, _ = indexed
    coll = audiosim.open_collection(root)
    s = coll.searcher()
    items = coll.items()
    q = coll.vectors([0])[0]  # a tone: the filters below exclude its neighbours
    # label: the 6 hums are far from a tone, yet k=5 hums come back (not a post-filter of the top 5)
    hits = s.search(vector=q, k=5, label="hum")
    assert len(hits) == 5 and {h.label for h in hits} == {"hum"}
    hum_ids = items.ids[items.label_code == items.labels.index("hum")]
    assert [h.id for h in hits] == _oracle(coll, q, hum_ids, 5)
    two = s.search(vector=q, k=10, label=["hum", "clicks"])
    assert len(two) == 10 and {h.label for h in two} == {"hum", "clicks"}
    assert len(s.search(vector=q, k=10, label="hum")) == 6  # fewer match than k: all of them
    assert s.search(vector=q, k=3, label="no-such-label") == []
    # path prefix: by component
    chirps = s.search(vector=q, k=6, path_prefix=folder / "chirp")
    assert len(chirps) == 6 and all(Path(h.path).parent.name == "chirp" for h in chirps)
    assert s.search(vector=q, k=3, path_prefix=str(folder / "chir")) == []
    # durations
    long_ = s.search(vector=q, k=8, min_duration_s=2.0)
    assert len(long_) == 8 and all(h.duration_s >= 2.0 for h in long_)
    assert [h.id for h in long_] == _oracle(coll, q, items.ids[items.duration_s >= 2.0], 8)
    short = s.search(vector=q, k=4, max_duration_s=1.5)
    assert all(h.duration_s <= 1.5 for h in short) and len(short) == min(4, int((items.duration_s <= 1.5).sum()))


def test_exclude_same_file_and_time_range(indexed, tmp_path):
    folder, root, _ = indexed
    s = audiosim.open_collection(root).searcher()
    clip = sorted((folder / "chirp").iterdir())[1]
    hits = s.search(clip=clip, k=5, exclude_same_file=True)
    assert len(hits) == 5 and str(clip.resolve()) not in {h.path for h in hits}
    first = s.search(clip=clip, k=1)[0]
    assert all(h.id != first.id for h in s.search(id=first.id, k=5, exclude_same_file=True))
    # a query of a tone then a hum: each half finds its own kind
    tone = sorted((folder / "tone").iterdir())[0]
    hum = sorted((folder / "hum").iterdir())[0]
    a, sra = sf.read(tone, dtype="float32", always_2d=True)
    b, srb = sf.read(hum, dtype="float32", always_2d=True)
    import librosa

    a = librosa.resample(a.mean(axis=1), orig_sr=sra, target_sr=16000)
    b = librosa.resample(b.mean(axis=1), orig_sr=srb, target_sr=16000)
    both = tmp_path / "tone_then_hum.wav"
    sf.write(both, np.concatenate([a, b]), 16000)
    split = a.size / 16000
    assert s.search(clip=both, k=1, end_s=split)[0].label == "tone"
    assert s.search(clip=both, k=1, start_s=split)[0].label == "hum"
    with pytest.raises(AudiosimError, match="time range"):
        s.search(clip=both, k=1, start_s=1e4)


def test_query_errors_are_clear(indexed):
    _, root, _ = indexed
    s = audiosim.open_collection(root).searcher()
    with pytest.raises(AudiosimError, match="exactly one query"):
        s.search(k=3)
    with pytest.raises(AudiosimError, match="exactly one query"):
        s.search(id=1, vector=np.zeros(336), k=3)
    with pytest.raises(AudiosimError, match="dimension 336"):
        s.search(vector=np.zeros(5), k=3)
    with pytest.raises(AudiosimError, match="no item with id"):
        s.search(id=10_000, k=3)
    with pytest.raises(AudiosimError, match="sample_rate"):
        s.search(waveform=np.zeros(16000, np.float32), k=3)
    with pytest.raises(AudiosimError, match="k must be"):
        s.search(id=1, k=0)


def test_conflicting_options_are_refused_and_omitted_ones_inherited(demo_folder, tmp_path):
    root = tmp_path / "c"
    audiosim.index_folder(demo_folder, root, embedder="logmel", metric="euclidean", segment_s=1.0)
    for kwargs, needle in (({"segment_s": 2.0}, "--segment 2"), ({"metric": "cosine"}, "--metric cosine"),
                           ({"pooling": "max"}, "--pooling max"), ({"embedder": "yamnet"}, "--embedder yamnet")):
        with pytest.raises(CollectionMismatchError, match="Omit these options") as e:
            audiosim.index_folder(demo_folder, root, **kwargs)
        assert needle in str(e.value)
    again = audiosim.index_folder(demo_folder, root)  # every option from the collection
    assert again.unchanged == 20 and again.embedded == 0
    coll = audiosim.open_collection(root)
    assert coll.metric == "euclidean" and coll.segment_s == 1.0 and coll.embedder.name == "logmel"
    hits = coll.searcher().search(id=0, k=3)
    assert hits[0].score == pytest.approx(0.0, abs=1e-4) and hits[0].score <= hits[1].score  # distances, lower first


def test_delete_by_id_and_path_and_the_searcher_follows(demo_folder, tmp_path):
    folder = tmp_path / "src"
    shutil.copytree(demo_folder, folder)
    root = tmp_path / "c"
    audiosim.index_folder(folder, root, embedder="logmel")
    coll = audiosim.open_collection(root)
    s = coll.searcher()
    rev = s.revision
    victim = sorted((folder / "hum").iterdir())[0]
    assert coll.delete(paths=[str(victim)]) == 1
    assert str(victim.resolve()) not in {h.path for h in s.search(clip=victim, k=20)}  # reloaded by itself
    assert s.revision > rev
    assert coll.delete(ids=[0, 1]) == 2
    assert len(audiosim.open_collection(root)) == 17 and {0, 1}.isdisjoint(h.id for h in s.search(id=2, k=20))
    with pytest.raises(AudiosimError, match="no file"):
        coll.delete(paths=["/nowhere.wav"])
    # another process adds files: the same searcher sees them without being rebuilt
    extra = folder / "late"
    extra.mkdir()
    sf.write(extra / "late_tone.wav", (0.4 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32), 16000)
    subprocess.run([sys.executable, "-m", "audiosim", "index", str(folder), "--collection", str(root), "--quiet"],
                   check=True, capture_output=True)
    assert str((extra / "late_tone.wav").resolve()) in {h.path for h in s.search(clip=extra / "late_tone.wav", k=1)}
