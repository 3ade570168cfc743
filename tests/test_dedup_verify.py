"""Duplicates checked by their audio, duplicated stretches of segment collections, the torch neighbour search (issue 23, 3 and 5).

Proves: the content comparison scores a copy near 1 whatever its gain, codec, sample rate (8 kHz
too) or trim, and finds the trim's offset; two renders of one kind of synthetic sound (same
generator, other seed; two pink noises) fail it; digital-silence padding never counts (a copy
whose padding holds a faint noise floor still matches, over the sounding part only); silence
alone is no evidence. A pair whose file was deleted after indexing is judged by its vectors and
the report says so. Decoding within a tiny memory budget scores the same as with a large one.
A synthetic recording's stretch copied into another recording (quieter) and a stretch repeated
inside one recording are found, with their times, and nothing else. The torch block search
returns the FAISS graph's pairs, ranks and similarities; ``--device cuda`` without a GPU is a
clear error, and ``auto`` picks torch only where torch sees CUDA and FAISS has no GPU.
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import audiosim
from audiosim.cli import main
from audiosim.engine.audio import synth
from audiosim.engine.audio.decode import resample
from audiosim.engine.search import content_match as cm
from audiosim.engine.search.dedup import find_duplicates
from audiosim.errors import DeviceError, MissingDependencyError

SR = 16000


def events(seconds: float, seed: int) -> np.ndarray:
    """Synthetic: tone bursts of random pitch, glide, length and level over a faint noise floor."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = 0.01 * rng.standard_normal(n)
    t = 0
    while t < n:
        d = int(rng.uniform(0.1, 0.35) * SR)
        tt = np.arange(min(d, n - t)) / SR
        f, glide, level = rng.uniform(300, 3500), rng.uniform(-0.3, 0.3), rng.uniform(0.1, 0.5)
        x[t:t + tt.size] += level * np.sin(2 * np.pi * f * tt * (1 + glide * tt)) * np.hanning(tt.size)
        t += d + int(rng.uniform(0, 0.1) * SR)
    return x.astype(np.float32)


def mp3(x: np.ndarray, sr: int) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="MP3", subtype="MPEG_LAYER_III")
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


def p(x: np.ndarray, sr: int = SR) -> cm.Print:
    return cm.content_print(x, sample_rate=sr)


def test_a_copy_scores_near_one_whatever_its_gain_codec_rate_or_trim():
    x = events(4.0, 1)
    original = p(x)
    trim = int(0.37 * SR)
    copies = {"gain -6 dB": p(0.5 * x), "gain +6 dB, clipped": p(np.clip(2 * x, -1, 1)), "mp3": p(mp3(x, SR)),
              "8 kHz": p(resample(x, orig_sr=SR, target_sr=8000), 8000),
              "44.1 kHz": p(resample(x, orig_sr=SR, target_sr=44100), 44100), "trimmed": p(x[trim:])}
    for name, c in copies.items():
        m = cm.match(original, c)
        assert m is not None and m.score >= 0.95, (name, m)
    m = cm.match(original, copies["trimmed"])
    assert abs(m.offset_s + 0.37) <= 0.01, m  # b at t - 0.37 s holds what a holds at t
    assert abs(cm.match(original, copies["gain -6 dB"]).gain_db + 6.02) < 0.2


def test_other_renders_of_one_kind_of_sound_fail():
    assert cm.match(p(events(4.0, 1)), p(events(4.0, 2))).score < 0.6
    rng = np.random.default_rng(3)
    pink = [p(synth.noise(duration_s=4.0, color="pink", rng=rng)) for _ in range(2)]
    assert cm.match(pink[0], pink[1]).score < 0.8
    assert cm.match(pink[0], pink[0]).score == 1.0


def test_digital_silence_padding_never_counts():
    x = events(3.0, 4)
    pad = np.zeros(SR, np.float32)
    padded = np.concatenate([pad, x, pad])
    floor = padded.copy()
    rng = np.random.default_rng(0)
    floor[:SR] = floor[-SR:] = 0.001 * rng.standard_normal(SR)  # a noise floor where the original is digital silence
    a, b = p(padded), p(floor)
    assert a.sounding.mean() < 0.65 and b.sounding.all()
    m = cm.match(a, b)
    assert m.score >= 0.95 and abs(m.common_s - 3.0) < 0.1, m  # only the 3 s that sound in both were compared
    assert cm.match(p(np.zeros(3 * SR, np.float32)), b) is None  # silence is no evidence either way


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Synthetic clips: an event sequence and its quieter copy, two renders of another, two pink noises."""
    folder = tmp_path_factory.mktemp("verify") / "clips"
    folder.mkdir()
    rng = np.random.default_rng(5)
    x = events(4.0, 10)
    sf.write(folder / "ev.wav", x, SR)
    sf.write(folder / "ev_quiet.wav", 0.7 * x, SR)
    sf.write(folder / "other1.wav", events(4.0, 11), SR)
    sf.write(folder / "other2.wav", events(4.0, 12), SR)
    for name in ("pink1", "pink2"):
        sf.write(folder / f"{name}.wav", synth.noise(duration_s=4.0, color="pink", rng=rng), SR)
    return folder


def test_a_deleted_file_falls_back_to_the_vectors_and_the_report_says_so(clips, tmp_path):
    folder = tmp_path / "f"
    shutil.copytree(clips, folder)
    coll = tmp_path / "c"
    audiosim.index_folder(folder, coll, embedder="logmel", label_from="none")
    before = audiosim.open_collection(coll).duplicates()
    names = [sorted(m.path.rsplit("/", 1)[-1] for m in g.members) for g in before.groups]
    assert names == [["ev.wav", "ev_quiet.wav"]]  # the pink noises and the other renders fail the audio check
    assert before.groups[0].members[0].basis == "content" and before.verification.unreadable_files == 0
    (folder / "ev_quiet.wav").unlink()
    after = audiosim.open_collection(coll).duplicates()
    assert [sorted(m.path.rsplit("/", 1)[-1] for m in g.members) for g in after.groups] == [["ev.wav", "ev_quiet.wav"]]
    assert {m.basis for m in after.groups[0].members} == {"vector"}
    v = after.verification
    assert v.unreadable_files == 1 and v.vector_pairs == 1 and "ev_quiet.wav" in v.unreadable[0]
    text = CliRunner().invoke(main, ["dedup", "--collection", str(coll)]).output
    assert "1 file could not be read" in text and "(vector)" in text


def test_a_tiny_print_budget_scores_the_same(clips):
    from audiosim.engine.search.verify import check_pairs

    names = sorted(p.name for p in clips.iterdir())
    sources = [[str(clips / n)] for n in names]
    i, j = np.triu_indices(len(names), 1)
    big = check_pairs(sources, i, j)
    small = check_pairs(sources, i, j, budget_bytes=1, workers=1, chunk_pairs=1)
    np.testing.assert_array_equal(big.score, small.score)
    assert big.decoded == len(names) < small.decoded  # evicted prints were decoded again
    ev = names.index("ev.wav"), names.index("ev_quiet.wav")
    assert big.score[(i == ev[0]) & (j == ev[1])][0] >= 0.95 and np.sort(big.score)[-2] < 0.8


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Synthetic recordings: a.wav repeats its own 2-5 s at 22-25 s; b.wav holds a's 8-16 s at 5-13 s, 4.4 dB quieter."""
    base = tmp_path_factory.mktemp("stretches")
    (base / "rec").mkdir()
    a = events(30.0, 1)
    a[22 * SR:25 * SR] = a[2 * SR:5 * SR]
    b = events(20.0, 2)
    b[5 * SR:13 * SR] = 0.6 * a[8 * SR:16 * SR]
    for name, x in (("a", a), ("b", b), ("c", events(15.0, 3))):
        sf.write(base / "rec" / f"{name}.wav", x, SR)
    audiosim.index_folder(base / "rec", base / "coll", embedder="logmel", segment_s=1.0, segment_hop_s=0.5)
    return base / "coll"


def test_duplicated_stretches_are_found_with_their_times_and_nothing_else(recordings):
    report = audiosim.open_collection(recordings).duplicates()
    found = sorted(tuple((m.path.rsplit("/", 1)[-1], m.offset_s, m.end_s) for m in g.members) for g in report.groups)
    assert [g.kind for g in report.groups] == ["stretch", "stretch"], found
    want = [(("a.wav", 2.0, 5.0), ("a.wav", 22.0, 25.0)), (("a.wav", 8.0, 16.0), ("b.wav", 5.0, 13.0))]
    for got, expected in zip(found, want):
        for (name, start, end), (wname, wstart, wend) in zip(got, expected):
            assert name == wname and abs(start - wstart) <= 0.15 and abs(end - wend) <= 0.15, found
    assert all(m.basis == "content" and m.similarity >= 0.95 for g in report.groups for m in g.members)
    d = json.loads(CliRunner().invoke(main, ["dedup", "--collection", str(recordings), "--json"]).output)
    assert d["stretch_groups"] == 2 and d["files"] == 3 and {"offset_s", "end_s"} <= set(d["duplicates"][0]["members"][0])
    assert "2 duplicated stretches" in CliRunner().invoke(main, ["dedup", "--collection", str(recordings)]).output
    plain = find_duplicates(audiosim.open_collection(recordings), verify=False)  # vectors alone: runs of segments
    assert all(g.kind == "stretch" and len(g.members) == 2 for g in plain.groups)


def _planted(n=600, d=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[n - 60:] = X[:60] + 0.2 * rng.standard_normal((60, d)).astype(np.float32)
    return X


@pytest.mark.parametrize("threshold,k,mutual", [(0.9, 5, None), (-1.0, 5, 1), (0.2, 10, 3)])
def test_the_torch_search_equals_the_faiss_search(threshold, k, mutual):
    pytest.importorskip("torch")
    from audiosim.engine.search.neighbours_torch import similar_pairs_torch
    from audiosim.indexes.graph import similar_pairs

    X = _planted()
    want = similar_pairs(X, threshold=threshold, k=k, device="cpu", mutual=mutual)
    got = similar_pairs_torch(X, threshold=threshold, k=k, device="cpu", mutual=mutual, block=64, chunk=100)
    assert len(want) > 0
    np.testing.assert_array_equal(got.i, want.i)
    np.testing.assert_array_equal(got.j, want.j)
    np.testing.assert_array_equal(got.rank_ij, want.rank_ij)
    np.testing.assert_array_equal(got.rank_ji, want.rank_ji)
    np.testing.assert_allclose(got.similarity, want.similarity, atol=1e-5)


def test_cuda_without_a_gpu_is_a_clear_error_and_auto_picks_torch_only_on_cuda(monkeypatch):
    from audiosim.engine.search import dedup

    monkeypatch.setattr(dedup, "faiss_has_gpu", lambda: False)
    monkeypatch.setattr(dedup, "cuda_present", lambda: False)
    assert dedup.resolve_device("auto") == "faiss" and dedup.resolve_device("cpu") == "faiss"
    with pytest.raises((DeviceError, MissingDependencyError), match="omit --device|pip install torch"):
        dedup.neighbour_pairs(_planted(), threshold=0.9, device="cuda")
    monkeypatch.setattr(dedup, "cuda_present", lambda: True)
    calls = []
    monkeypatch.setattr(dedup, "similar_pairs_torch", lambda X, **kw: calls.append(kw) or "torch pairs")
    assert dedup.neighbour_pairs(_planted(), threshold=0.9, device="auto") == "torch pairs"
    assert calls[0]["device"] == "cuda"
    monkeypatch.setattr(dedup, "faiss_has_gpu", lambda: True)
    assert dedup.resolve_device("auto") == "faiss"  # a FAISS GPU build comes first
    assert dedup.resolve_device("cpu") == "faiss"
