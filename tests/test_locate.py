"""Excerpt location: the segment grid (golden starts, durations and member frames), votes on
hand-made hits (agreeing, split between two bins, chance matches, euclidean), and end to end: a
synthetic excerpt (tones, chirps, noise, clicks) cut from a long file at a known offset, segment
vectors from the weight-free logmel embedder, an exact numpy search per query segment, and
``locate`` finding the file and the offset within one hop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from audiosim.engine.audio import synth
from audiosim.engine.models.embedders import make_embedder
from audiosim.engine.search.locate import LocateError, locate, vote_offsets
from audiosim.engine.ingest.segments import (
    SegmentError,
    cut_waveform,
    frames_in_segments,
    segment_grid,
    segments_with_frames,
)
from audiosim.indexes.vectors import l2_normalize

SR = 16000
SEGMENT_S, HOP_S = 2.0, 1.0


@dataclass(frozen=True)
class H:
    path: str
    offset_s: float
    score: float


# --------------------------------------------------------------------------- grid
def test_segment_grid_golden():
    off, dur = segment_grid(10.0, segment_s=2.0, hop_s=1.0)
    assert off.tolist() == list(range(10)) and dur.tolist() == [2.0] * 9 + [1.0]
    off, dur = segment_grid(10.5, segment_s=2.0, hop_s=1.0)
    assert off.tolist() == list(range(11)) and dur.tolist() == [2.0] * 9 + [1.5, 0.5]
    off, dur = segment_grid(5.0, segment_s=2.0)
    assert off.tolist() == [0, 2, 4] and dur.tolist() == [2, 2, 1]
    off, dur = segment_grid(1.0, segment_s=2.0, hop_s=0.5)
    assert off.tolist() == [0, 0.5] and dur.tolist() == [1.0, 0.5]
    off, dur = segment_grid(0.0, segment_s=2.0)
    assert off.tolist() == [0.0] and dur.tolist() == [0.0]
    off, _ = segment_grid(0.3 * 10, segment_s=1.0, hop_s=0.1 * 3)  # 3.0000000000000004 s, 0.30000000000000004 hop
    assert off.size == 10 and off[-1] == pytest.approx(2.7)
    with pytest.raises(SegmentError, match=r"segment hop must be in \(0, segment_s=2.0\]"):
        segment_grid(10, segment_s=2.0, hop_s=3.0)
    with pytest.raises(SegmentError, match="segment_s must be a positive"):
        segment_grid(10, segment_s=0)


def test_the_ingest_pipeline_cuts_on_this_grid():
    """EmbedMapper's segment rows are the grid's segments, each pooling the frames that start in it."""
    from audiosim.engine.ingest.mappers import EmbedMapper
    from audiosim.engine.ingest.pipeline import Decoded, FileItem
    from audiosim.engine.models.pooling import PoolingSpec

    emb = make_embedder("logmel")
    wave = synth.noise(duration_s=7.3, color="pink", rng=np.random.default_rng(4))
    rows = EmbedMapper(emb, PoolingSpec.parse("mu"), segment_s=2.0, segment_hop_s=1.0)(
        Decoded(item=FileItem("x.wav"), sha256="0" * 64, audio=wave, sample_rate=SR))
    frames, times = emb.embed_frames(wave)
    off, dur, members = segments_with_frames(times, wave.size / SR, segment_s=2.0, hop_s=1.0)
    np.testing.assert_allclose(rows.offset_s, off)
    np.testing.assert_allclose(rows.duration_s, dur)
    np.testing.assert_allclose(rows.embedding, np.stack([frames[m].mean(axis=0) for m in members]), rtol=1e-6)


def test_frames_in_segments_by_frame_start():
    times = np.arange(9) * 0.48  # 0, .48, ..., 3.84
    off, _ = segment_grid(4.3, segment_s=2.0, hop_s=1.0)
    members = frames_in_segments(times, off, segment_s=2.0)
    assert [m.tolist() for m in members] == [[0, 1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7, 8], [7, 8], []]
    off, dur, members = segments_with_frames(times, 4.3, segment_s=2.0)
    assert off.tolist() == [0, 2] and dur.tolist() == [2, 2]  # the tail 4-4.3 s holds no frame start
    assert [m.tolist() for m in members] == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    off, dur, members = segments_with_frames(np.array([0.0]), 0.0, segment_s=2.0)  # an empty recording: one frame
    assert off.tolist() == [0.0] and dur.tolist() == [0.0] and members[0].tolist() == [0]


def test_cut_waveform_pieces_and_offsets():
    x = np.arange(int(5.5 * 10), dtype=np.float32)  # 5.5 s at 10 Hz
    pieces, offsets = cut_waveform(x, 10, segment_s=2.0, hop_s=1.5)
    assert offsets.tolist() == [0.0, 1.5, 3.0, 4.5]
    assert [(p[0], p.size) for p in pieces] == [(0, 20), (15, 20), (30, 20), (45, 10)]
    with pytest.raises(SegmentError, match="mono 1-D"):
        cut_waveform(np.zeros((2, 10)), 10, segment_s=1.0)


# --------------------------------------------------------------------------- votes
def test_votes_pick_the_agreeing_offset_per_file():
    qoff = np.array([0.0, 1.0, 2.0, 3.0])
    hits = [
        [H("long", 10.0, 0.90), H("other", 5.0, 0.99), H("long", 40.0, 0.80)],
        [H("long", 11.0, 0.85), H("long", 3.0, 0.95)],
        [H("long", 12.0, 0.80), H("other", 9.0, 0.70)],
        [H("long", 13.0, 0.88)],
    ]
    locs = locate(qoff, hits, hop_s=1.0, query_duration_s=4.5)
    # confidence: weighted support (1 / rank within each segment's matches) over the best other place's,
    # per segment: "long" at 10 has 0.5 + 0.5 + 1 + 1 = 3; the best other place ("other" at 5, or "long"
    # at 2 from segment 1's best match) has 1 -> (3 - 1) / 4
    assert [(l.rank, l.path, l.offset_s, l.end_s, l.votes, l.confidence) for l in locs] == [
        (1, "long", 10.0, 14.5, 4, 0.5), (2, "other", 5.0, 9.5, 1, 0.0)]
    assert [l.agreement for l in locs] == [1.0, 0.25]
    assert locs[0].mean_score == pytest.approx((0.90 + 0.85 + 0.80 + 0.88) / 4) and locs[0].best_score == 0.90
    assert [(v.query_offset_s, v.match_offset_s) for v in locs[0].support] == [(0, 10), (1, 11), (2, 12), (3, 13)]
    assert locs[0].to_dict()["n_segments"] == 4
    assert len(locate(qoff, hits, hop_s=1.0, max_files=1)) == 1


def test_votes_split_between_two_bins_average_to_the_true_offset():
    # an excerpt starting at 20.5 s on a 1 s grid: its segments match at 20 or 21 s past their own start
    qoff = np.arange(6.0)
    matches = [20, 22, 22, 24, 24, 26]  # q + 20 or q + 21
    locs = locate(qoff, [[H("f", m, 0.9)] for m in matches], hop_s=1.0)
    assert locs[0].votes == 6 and locs[0].offset_s == pytest.approx(20.5)
    strict = locate(qoff, [[H("f", m, 0.9)] for m in matches], hop_s=1.0, tolerance_bins=0)
    assert strict[0].votes == 3  # without tolerance only one of the two bins counts


def test_euclidean_prefers_smaller_distances_and_errors_are_typed():
    qoff = np.array([0.0, 1.0])
    hits = [[H("a", 5.0, 0.4), H("b", 7.0, 0.1)], [H("a", 6.0, 0.5), H("b", 8.0, 0.2)]]
    locs = locate(qoff, hits, hop_s=1.0, metric="euclidean")
    assert [(l.path, l.votes, l.best_score) for l in locs] == [("b", 2, 0.1), ("a", 2, 0.4)]
    assert [l.path for l in locate(qoff, hits, hop_s=1.0, metric="cosine")] == ["a", "b"]
    with pytest.raises(LocateError, match="2 hit lists for 3 query segments"):
        locate(np.zeros(3), hits, hop_s=1.0)
    with pytest.raises(LocateError, match="query_index must lie in"):
        vote_offsets(np.array([5]), ["a"], np.zeros(1), np.zeros(1), np.zeros(2), hop_s=1.0)
    assert locate(np.zeros(2), [[], []], hop_s=1.0) == []


# --------------------------------------------------------------------------- end to end
def _soundscape(duration_s: float, seed: int) -> np.ndarray:
    """Random events of 0.2-0.9 s (tones, chirps, noises, clicks, pauses) at random levels, over a noise floor."""
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < duration_s * SR:
        d = float(rng.uniform(0.2, 0.9))
        kind = rng.integers(0, 5)
        if kind == 0:
            x = synth.tone(freq=float(rng.uniform(150, 4000)), harmonics=int(rng.integers(1, 4)), duration_s=d, rng=rng)
        elif kind == 1:
            f0 = float(rng.uniform(100, 1000))
            x = synth.chirp(f0=f0, f1=f0 * float(rng.uniform(2, 8)), duration_s=d, rng=rng)
        elif kind == 2:
            x = synth.noise(duration_s=d, color=str(rng.choice(["white", "pink", "brown"])), rng=rng)
        elif kind == 3:
            x = synth.clicks(rate_hz=float(rng.uniform(3, 20)), duration_s=d, rng=rng)
        else:
            x = np.zeros(int(d * SR), np.float32)
        parts.append(x * float(rng.uniform(0.2, 1.0)))
        total += parts[-1].size
    x = np.concatenate(parts)[: int(duration_s * SR)]
    return (x + 0.003 * rng.standard_normal(x.size)).astype(np.float32)  # a recording's noise floor


def _segment_vectors(embedder, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pooled frame embeddings per segment (the collection's and the query's), and the segment starts."""
    frames, times = embedder.embed_frames(wave)
    offsets, _, members = segments_with_frames(times, wave.size / SR, segment_s=SEGMENT_S, hop_s=HOP_S)
    return np.stack([frames[m].mean(axis=0) for m in members]), offsets


@pytest.fixture(scope="module")
def collection():
    embedder = make_embedder("logmel")
    files = {"long.wav": _soundscape(150.0, seed=1), "other1.wav": _soundscape(60.0, seed=2),
             "other2.wav": _soundscape(60.0, seed=3)}
    vecs, paths, offsets = [], [], []
    for path, wave in files.items():
        v, off = _segment_vectors(embedder, wave)
        vecs.append(v)
        paths += [path] * len(off)
        offsets.append(off)
    X = np.concatenate(vecs)
    mu, sd = X.mean(axis=0), X.std(axis=0) + 1e-6  # standardise features so no band dominates the cosine
    return embedder, files, l2_normalize((X - mu) / sd), (mu, sd), paths, np.concatenate(offsets)


@pytest.mark.parametrize("start_s,length_s", [(37.0, 20.0), (61.3, 12.0), (118.75, 30.0)])
def test_locate_finds_a_synthetic_excerpt_within_one_hop(collection, start_s, length_s):
    embedder, files, X, (mu, sd), paths, offsets = collection
    wave = files["long.wav"]
    excerpt = wave[int(start_s * SR): int((start_s + length_s) * SR)]
    Q, qoff = _segment_vectors(embedder, excerpt)
    sims = l2_normalize((Q - mu) / sd) @ X.T  # exact cosine search, one row per query segment
    top = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    hits = [[H(paths[j], float(offsets[j]), float(sims[i, j])) for j in row] for i, row in enumerate(top)]
    locs = locate(qoff, hits, hop_s=HOP_S, query_duration_s=length_s)
    best = locs[0]
    assert best.path == "long.wav", [loc.to_dict() for loc in locs]
    assert abs(best.offset_s - start_s) <= HOP_S, best.to_dict()
    assert best.end_s == pytest.approx(best.offset_s + length_s)
    assert best.confidence >= 0.5 and all(loc.votes < best.votes for loc in locs[1:])


def test_confidence_drops_when_two_places_match_equally():
    qoff = np.arange(6, dtype=float)
    clear = [[H("a", 20.0 + i, 0.9), H("b", 50.0 + 3 * i, 0.5)] for i in range(6)]  # only "a" agrees
    tie = [[H("a", 20.0 + i, 0.9 - 0.01 * (i % 2)), H("b", 70.0 + i, 0.9 - 0.01 * ((i + 1) % 2))] for i in range(6)]
    sure, unsure = locate(qoff, clear, hop_s=1.0)[0], locate(qoff, tie, hop_s=1.0)
    assert sure.path == "a" and sure.offset_s == 20.0 and sure.confidence > 0.8
    assert {l.votes for l in unsure} == {6} and {l.offset_s for l in unsure} == {20.0, 70.0}
    assert all(l.confidence < 0.1 for l in unsure)  # both places agree fully: no margin


def test_an_excerpt_shorter_than_one_analysis_window_is_a_clear_error(tmp_path):
    """Issue 18: ``locate`` of a 10 ms excerpt answered with confidence 1.00."""
    import soundfile as sf
    from click.testing import CliRunner

    from audiosim.cli import main
    from audiosim.engine.ingest.indexer import index_folder
    from audiosim.engine.search.library import open_collection
    from audiosim.errors import AudiosimError

    audio = tmp_path / "audio"
    audio.mkdir()
    long = _soundscape(12.0, seed=5)
    sf.write(audio / "long.wav", long, SR)
    coll = tmp_path / "c"
    index_folder(audio, coll, embedder="logmel", segment_s=SEGMENT_S, segment_hop_s=HOP_S)
    searcher = open_collection(coll).searcher()
    window = searcher.embedder.info.window_s
    with pytest.raises(AudiosimError, match=r"shorter than one .* analysis window"):
        searcher.locate(waveform=long[int(3 * SR): int(3.01 * SR)], sample_rate=SR)
    with pytest.raises(AudiosimError, match=r"shorter than one .* analysis window"):  # a time range of a longer clip
        searcher.locate(clip=str(audio / "long.wav"), start_s=3.0, end_s=3.0 + window / 2)
    excerpt = tmp_path / "tiny.wav"
    sf.write(excerpt, long[int(3 * SR): int(3.01 * SR)], SR)
    r = CliRunner().invoke(main, ["locate", str(excerpt), "--collection", str(coll)])
    assert r.exit_code == 2 and "analysis window" in r.output and "Traceback" not in r.output, r.output
    assert searcher.locate(waveform=long[3 * SR: 9 * SR], sample_rate=SR)[0].path.endswith("long.wav")  # 6 s: found
