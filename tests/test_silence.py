"""Digital silence is left out of pooling by default (issue 23, item 1).

Proves: a new collection records ``skip_silence`` and leaves silence out; a zero-padded and an
unpadded copy of one synthetic sound are near-identical by default and not with
``--keep-silence`` (YAMNet, and the log-mel embedder with mu+sigma); a collection keeps its own
setting on later runs and a manifest without the field reads as "kept"; an all-silent file is a
clear per-file failure (no NaN vector) and an all-silent query a clear error (API and CLI);
silent stretches of a long recording store no segment; tags that only describe padding are never
a shared tag; the benchmark's silence variants.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import audiosim
from audiosim.cli import main
from audiosim.engine.audio import synth
from audiosim.engine.ingest.mappers import FramePooler
from audiosim.engine.models.pooling import PoolingSpec
from audiosim.engine.models.tags import Tag, shared_tags
from audiosim.errors import SilentAudioError

SR = 16000


def run(*args, ok=True):
    r = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output
    return r


def _cos(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _padded_pair(folder, rng):
    """A synthetic 3 s sound, alone and zero-padded to 5 s (as ESC-50 pads short sounds), plus another sound."""
    folder.mkdir()
    sound = (0.6 * synth.chirp(f0=400, f1=3000, duration_s=3.0, rng=rng)
             + 0.1 * synth.noise(duration_s=3.0, rng=rng)).astype(np.float32)
    sf.write(folder / "alone.wav", sound, SR)
    sf.write(folder / "padded.wav", np.concatenate([sound, np.zeros(2 * SR, np.float32)]), SR)
    sf.write(folder / "other.wav", synth.clicks(rate_hz=9, duration_s=2.0, rng=rng), SR)


def _vectors(coll) -> dict:
    c = audiosim.open_collection(coll)
    table = c.read_table(["path", "embedding"])
    return {p.split("/")[-1]: np.asarray(v, dtype=np.float64) for p, v in
            zip(table["path"].to_pylist(), table["embedding"].to_pylist())}


@pytest.mark.parametrize("embedder,pooling", [("yamnet", "mu"), ("logmel", "mu+sigma")])
def test_padded_and_unpadded_copies_are_near_identical_by_default(tmp_path, embedder, pooling, request):
    weights = request.getfixturevalue("yamnet_tflite") if embedder == "yamnet" else None
    folder = tmp_path / "f"
    _padded_pair(folder, np.random.default_rng(3))
    cos = {}
    for keep in (False, True):
        coll = tmp_path / f"c{keep}"
        args = ["index", folder, "--collection", coll, "--embedder", embedder, "--pooling", pooling, "--quiet"]
        if weights:
            args += ["--weights", weights]
        run(*(args + (["--keep-silence"] if keep else [])))
        c = audiosim.open_collection(coll)
        assert c.pooling.skip_silence is (not keep)
        assert c.manifest.pooling.to_dict()["skip_silence"] is (not keep)  # recorded either way
        v = _vectors(coll)
        cos[keep] = _cos(v["alone.wav"], v["padded.wav"])
    assert cos[False] > 0.97, cos
    assert cos[True] < cos[False] - 0.05, cos  # the padding pulls the kept vector towards the silence frame


def test_a_collection_keeps_its_setting_and_old_manifests_mean_kept(tmp_path):
    assert PoolingSpec.from_dict({"name": "mu"}).skip_silence is False  # made before the default: silence kept
    assert PoolingSpec.from_dict(PoolingSpec.parse("mu", skip_silence=True).to_dict()).skip_silence is True
    folder = tmp_path / "f"
    _padded_pair(folder, np.random.default_rng(4))
    coll = tmp_path / "c"
    audiosim.index_folder(folder, coll, embedder="logmel", skip_silence=False)
    sf.write(folder / "more.wav", synth.tone(freq=660, duration_s=1.0), SR)
    audiosim.index_folder(folder, coll)  # no option: the collection's own setting (kept), not the new default
    assert audiosim.open_collection(coll).pooling.skip_silence is False
    r = run("index", folder, "--collection", coll, "--skip-silence", ok=False)
    assert r.exit_code == 2 and "Traceback" not in r.output and "--collection" in r.output


def test_an_all_silent_file_is_a_clear_failure_and_a_silent_query_a_clear_error(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    sf.write(folder / "sound.wav", synth.tone(freq=500, duration_s=2.0), SR)
    sf.write(folder / "silent.wav", np.zeros(3 * SR, np.float32), SR)
    coll = tmp_path / "c"
    report = audiosim.index_folder(folder, coll, embedder="logmel")
    assert report.vectors == 1 and len(report.failures) == 1
    f = report.failures[0]
    assert f["path"].endswith("silent.wav") and "digital silence throughout" in f["message"]
    assert "--keep-silence" in f["message"]
    _, X = audiosim.open_collection(coll).embeddings()
    assert np.isfinite(X).all()
    s = audiosim.open_collection(coll).searcher()
    with pytest.raises(SilentAudioError, match="digital silence throughout"):
        s.search(waveform=np.zeros(2 * SR, np.float32), sample_rate=SR, k=1)
    r = run("query", folder / "silent.wav", "--collection", coll, ok=False)
    assert r.exit_code == 2 and "digital silence throughout" in r.output and "Traceback" not in r.output
    kept = tmp_path / "kept"  # --keep-silence: the silent file is stored, with a finite vector
    report = audiosim.index_folder(folder, kept, embedder="logmel", skip_silence=False)
    assert report.vectors == 2 and not report.failures
    _, X = audiosim.open_collection(kept).embeddings()
    assert np.isfinite(X).all()


def test_silent_stretches_of_a_long_recording_store_no_segment(tmp_path):
    rng = np.random.default_rng(5)
    x = np.zeros(30 * SR, np.float32)
    x[2 * SR:8 * SR] = 0.3 * synth.noise(duration_s=6.0, color="pink", rng=rng)
    x[20 * SR:26 * SR] = synth.chirp(f0=300, f1=3000, duration_s=6.0, rng=rng)
    folder = tmp_path / "rec"
    folder.mkdir()
    sf.write(folder / "gaps.wav", x, SR, subtype="FLOAT")
    counts = {}
    for keep in (False, True):
        coll = tmp_path / f"c{keep}"
        audiosim.index_folder(folder, coll, embedder="logmel", segment_s=2.0, segment_hop_s=1.0, skip_silence=not keep)
        items = audiosim.open_collection(coll).items()
        counts[keep] = len(items)
        if not keep:  # every stored segment touches sound: none lies inside the 8-20 s gap or after 26 s
            inside_gap = (items.offset_s >= 9.0) & (items.offset_s + items.duration_s <= 19.0)
            assert not inside_gap.any() and (items.offset_s < 26.0).all()
    assert counts[False] < counts[True] - 10, counts


def test_padding_tags_are_never_a_shared_tag():
    q = (Tag("Silence", 494, 0.98), Tag("Dog", 69, 0.6), Tag("Bark", 70, 0.4))
    h = (Tag("Silence", 494, 0.99), Tag("Bark", 70, 0.5))
    assert [t.name for t in shared_tags(q, h)] == ["Bark"]
    assert shared_tags((Tag("silence", 1, 1.0),), (Tag("silence", 1, 1.0),)) == []


def test_pooler_leaves_out_only_the_silence_frame():
    silence = np.array([1.0, 2.0, 3.0])
    frames = np.array([[1.0, 2.0, 3.0], [5.0, 1.0, 0.0], [1.0, 2.0, 3.0005], [3.0, 3.0, 3.0]])
    pooler = FramePooler(None, PoolingSpec.parse("mu", skip_silence=True), silence=silence)
    assert pooler.silent(frames).tolist() == [True, False, True, False]
    np.testing.assert_allclose(pooler(frames), [4.0, 2.0, 1.5])  # mean of the two frames with sound
    with pytest.raises(SilentAudioError):
        pooler(frames[[0, 2]])
    kept = FramePooler(None, PoolingSpec.parse("mu"), silence=silence)
    np.testing.assert_allclose(kept(frames), frames.mean(axis=0), rtol=1e-6)


def test_bench_variants_with_and_without_silence():
    from audiosim.eval.esc50_cache import make_variants

    vs = make_variants(["mu", "max"], [None], [True, False])
    assert [v.name for v in vs] == ["mu", "mu [silence kept]", "max", "max [silence kept]"]
    assert len({v.slug for v in vs}) == 4
