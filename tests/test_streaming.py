"""Streaming embedding: frames computed piece by piece equal the whole-file frames (brute-force oracle:
``embed_frames`` on the concatenated waveform), for every end-of-signal rule the registered embedders
use, for ``logmel`` and (with $AUDIOSIM_MODELS) real YAMNet; ``embed_file`` hashes exactly what it
decodes; and a 10-minute file stays within a memory bound that the whole-file path exceeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosim.engine.audio.decode import AudioLimitError, load_audio
from audiosim.engine.models.embedders import make_embedder
from audiosim.engine.models.embedders.base import Embedder, EmbedderInfo, check_waveform, pad_to_min_length, window_starts
from audiosim.engine.audio.streaming import FrameStitcher, StreamPlan, embed_file, embed_stream
from audiosim.files import sha256_file

SR = 16000
REPO = Path(__file__).resolve().parents[1]


class _Framed(Embedder):
    """A cheap embedder with a real receptive field (each frame: weighted sums of its ``span`` samples) and one
    of the end-of-signal rules of the registered embedders:

    * ``pad``  -- zero-pad to one window, then to whole hops (YAMNet, logmel, vae);
    * ``drop`` -- zero-pad to one window, drop a partial tail (VGGish);
    * ``fit``  -- windows that fit, or one unpadded window for a short clip (PANNs, via ``window_starts``).
    """

    def __init__(self, rule: str, *, window: int = 800, span: int = 830, hop: int = 400, sr: int = 1000,
                 hop_s: float | None = None) -> None:
        self.rule, self.window, self.span, self.hop = rule, window, span, hop
        self.info = EmbedderInfo(name=f"framed-{rule}", version="1", sample_rate=sr, dim=3, window_s=window / sr,
                                 hop_s=hop_s if hop_s is not None else hop / sr)
        self._w = np.random.default_rng(0).standard_normal((span, 3)).astype(np.float32)

    def _starts(self, n: int) -> np.ndarray:
        if self.rule == "fit":
            return window_starts(n, window=self.span, hop=self.hop)
        if n <= self.span:
            return np.zeros(1, dtype=np.int64)
        count = (n - self.span) // self.hop
        if self.rule == "pad" and (n - self.span) % self.hop:
            count += 1
        return np.arange(count + 1, dtype=np.int64) * self.hop

    def embed_frames(self, waveform):
        x = check_waveform(waveform)
        starts = self._starts(x.size)
        x = pad_to_min_length(x, int(starts[-1]) + self.span)
        windows = np.stack([x[s:s + self.span] for s in starts])
        # row by row: a matrix product's rounding can depend on how many rows it is given at once (BLAS blocking)
        frames = np.stack([np.tanh(w @ self._w) for w in windows]).astype(np.float32)
        return frames, self.frame_times(frames.shape[0])

    def embed_frames_with_scores(self, waveform):
        frames, times = self.embed_frames(waveform)
        return frames, times, frames[:, :2] ** 2


def _chunks(x: np.ndarray, rng: np.random.Generator, max_size: int) -> list[np.ndarray]:
    out, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, max_size + 1))
        out.append(x[i:i + n])
        i += n
    return out


@pytest.mark.parametrize("rule", ["pad", "drop", "fit"])
def test_stitched_frames_equal_whole_frames_for_every_end_rule(rule, rng):
    emb = _Framed(rule)
    lengths = [1, 799, 800, 830, 831, 1229, 1230, 1231, 3000, 4399, 4400, 4401, 4829, 4830, 4831, 9999, 12345]
    for n in lengths:
        x = rng.uniform(-1, 1, n).astype(np.float32)
        want, want_t = emb.embed_frames(x)
        for chunk_s, max_piece in ((2.0, 997), (1.2, 50), (0.4, 3000)):  # steps of 5, 3 and 1 frame(s)
            got, got_t = embed_stream(emb, _chunks(x, rng, max_piece), chunk_s=chunk_s)
            assert got.shape == want.shape, (rule, n, chunk_s)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got_t, want_t)


def test_too_small_a_context_is_caught_or_visible(rng):
    emb = _Framed("pad")
    x = rng.uniform(-1, 1, 20_000).astype(np.float32)
    want, _ = emb.embed_frames(x)
    got, _ = embed_stream(emb, [x], chunk_s=2.0, context_s=0.5)  # shorter than the 830-sample span
    assert got.shape == want.shape and not np.array_equal(got, want)  # the oracle tells wrong context apart
    got, _ = embed_stream(emb, [x], chunk_s=2.0, context_s=3.0)  # larger only costs overlap
    np.testing.assert_array_equal(got, want)


def test_scores_are_stitched_with_the_frames(rng):
    emb = _Framed("pad")
    x = rng.uniform(-1, 1, 9_001).astype(np.float32)
    frames, times, scores = embed_stream(emb, _chunks(x, rng, 700), chunk_s=1.2, scores=True)
    want_f, want_t, want_s = emb.embed_frames_with_scores(x)
    np.testing.assert_array_equal(frames, want_f)
    np.testing.assert_array_equal(scores, want_s)
    np.testing.assert_array_equal(times, want_t)


def test_stitcher_emits_frames_while_the_stream_runs(rng):
    emb = _Framed("pad")
    st = FrameStitcher(emb, chunk_s=2.0)
    assert (st.plan.hop, st.plan.frames_per_step) == (400, 5) and st.plan.context >= emb.span
    emitted = [st.push(rng.uniform(-1, 1, 1000).astype(np.float32)) for _ in range(10)]
    assert sum(len(b) for b in emitted[:2]) == 0 and sum(len(b) for b in emitted) >= 3
    assert st.n_samples == 10_000 and st.finish()[0].shape[0] + sum(
        b[0].shape[0] for blocks in emitted for b in blocks) == st.n_frames


def test_a_hop_that_is_not_whole_samples_is_embedded_in_one_piece(rng):
    emb = _Framed("pad", hop_s=0.4003)
    assert StreamPlan.for_embedder(emb).hop is None
    x = rng.uniform(-1, 1, 5_000).astype(np.float32)
    np.testing.assert_array_equal(embed_stream(emb, _chunks(x, rng, 900))[0], emb.embed_frames(x)[0])


@pytest.fixture(scope="module")
def logmel():
    return make_embedder("logmel")


def test_logmel_stream_equals_whole(logmel, rng):
    for n in (100, 15_600, 15_601, 23_039, 7_680 * 9 + 15_600, SR * 75 + 1_234):
        x = (0.3 * rng.standard_normal(n)).astype(np.float32)
        want, want_t = logmel.embed_frames(x)
        got, got_t = embed_stream(logmel, _chunks(x, rng, 40_000), chunk_s=10.0)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got_t, want_t)


def test_yamnet_stream_equals_whole(yamnet_tflite, rng):
    emb = make_embedder("yamnet", weights=yamnet_tflite)
    x = np.concatenate([0.3 * rng.standard_normal(SR * 50), 0.5 * np.sin(np.arange(SR * 25 + 4321) * 0.3)])
    x = x.astype(np.float32)
    want, want_t, want_s = emb.embed_frames_with_scores(x)
    got, got_t, got_s = embed_stream(emb, _chunks(x, rng, 60_000), chunk_s=15.0, scores=True)
    assert got.shape == want.shape == (1 + int(np.ceil((x.size - 15_600) / 7_680)), 1024)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got_t, want_t)


def test_embed_file_hashes_what_it_decodes_and_matches_load_audio(logmel, tmp_path, rng):
    p = tmp_path / "long.flac"
    sf.write(p, (0.2 * rng.standard_normal((44_100 * 40, 2))).astype(np.float32), 44_100, subtype="PCM_24")
    res = embed_file(logmel, p, chunk_s=7.0, block_s=3.0)
    wave = load_audio(p, sample_rate=SR)
    want, want_t = logmel.embed_frames(wave)
    np.testing.assert_allclose(res.frames, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(res.times, want_t)
    assert res.sha256 == sha256_file(p) and res.duration_s == pytest.approx(40.0)
    assert (res.info.sample_rate, res.info.channels, res.info.frames) == (44_100, 2, 44_100 * 40)


def test_embed_file_refuses_a_hostile_header_before_decoding(logmel, tmp_path, rng):
    p = tmp_path / "x.wav"
    sf.write(p, (0.2 * rng.standard_normal(SR)).astype(np.float32), SR, subtype="PCM_16")
    data = bytearray(p.read_bytes())
    data[24:28] = (16).to_bytes(4, "little")  # the header now claims 16 Hz
    p.write_bytes(bytes(data))
    with pytest.raises(AudioLimitError, match="16 Hz"):
        embed_file(logmel, p)


def _bench(minutes: float, embedder: str, mode: str = "stream") -> dict:
    cmd = [sys.executable, str(REPO / "scripts" / "bench_memory.py"), "--minutes", str(minutes), "--embedders",
           embedder, "--api", "embed_file", "--mode", mode]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ.copy(), check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)["results"][0]
    assert "error" not in result, result
    return result


def test_ten_minutes_of_44k_audio_stay_in_bounded_memory_logmel():
    # Peak RSS of a fresh process decoding + embedding a 10-minute 44.1 kHz WAV. The whole-file path
    # (load_audio + embed_frames) measured 854 MB here, streaming 263 MB: 600 MB tells them apart.
    result = _bench(10, "logmel")
    assert result["api"] == "embed_file" and result["frames"] == 1249
    assert result["peak_rss_mb"] < 600, result


def test_ten_minutes_of_44k_audio_stay_in_bounded_memory_yamnet(yamnet_tflite):
    # Whole-file: 1784 MB measured; streaming: 241 MB. The bound is generous and still tells them apart.
    result = _bench(10, "yamnet")
    assert result["api"] == "embed_file" and result["frames"] == 1249
    assert result["peak_rss_mb"] < 1500, result
