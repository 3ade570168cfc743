"""The ESC-50 benchmark end to end on a tiny fake ESC-50 folder of synthetic sounds (logmel embedder),
plus cheap checks on the real ESC-50 when ``ESC50_ROOT`` is set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiosim.engine.audio import synth
from audiosim.errors import DatasetError
from audiosim.eval import bench as B
from audiosim.eval import esc50_cache as C
from audiosim.eval.esc50 import SUPER_CLASSES, esc50_root, load_esc50

SR = 16000
# two sub-classes per super-class (target // 10), each a clearly different synthetic sound
CLASSES = {
    0: ("low_tone", lambda r: synth.tone(freq=300, duration_s=1.2, harmonics=3, rng=r)),
    1: ("high_tone", lambda r: synth.tone(freq=1500, duration_s=1.2, rng=r)),
    10: ("low_chirp", lambda r: synth.chirp(f0=100, f1=1000, duration_s=1.2, rng=r)),
    11: ("high_chirp", lambda r: synth.chirp(f0=2000, f1=7000, duration_s=1.2, rng=r)),
    20: ("white_noise", lambda r: synth.noise(duration_s=1.2, color="white", rng=r)),
    21: ("brown_noise", lambda r: synth.noise(duration_s=1.2, color="brown", rng=r)),
    30: ("slow_clicks", lambda r: synth.clicks(rate_hz=3, duration_s=1.2, rng=r)),
    31: ("fast_clicks", lambda r: synth.clicks(rate_hz=25, duration_s=1.2, rng=r)),
    40: ("hum", lambda r: synth.machine_hum(duration_s=1.2, rng=r)),
    41: ("rubbing_hum", lambda r: synth.machine_hum(f0=120, anomaly="rub", duration_s=1.2, rng=r)),
}
FORMATS = (("ogg", "VORBIS"), ("wav", "PCM_16"), ("flac", "PCM_16"))


def write_fake_esc50(root: Path, *, folds: int = 5, seed: int = 0) -> Path:
    """ESC-50 layout: meta/esc50.csv naming .wav files, audio/<stem>.<ext> in mixed formats."""
    rng = np.random.default_rng(seed)
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = []
    n = 0
    for fold in range(1, folds + 1):
        for target, (category, make) in CLASSES.items():
            src = 1000 + n
            stem = f"{fold}-{src}-A-{target}"
            ext, subtype = FORMATS[n % len(FORMATS)]
            sf.write(str(root / "audio" / f"{stem}.{ext}"), make(rng), SR, subtype=subtype)
            rows.append([f"{stem}.wav", fold, target, category, "False", src, "A"])
            n += 1
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def fake_esc50(tmp_path_factory) -> Path:
    return write_fake_esc50(tmp_path_factory.mktemp("esc50"))


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


# --------------------------------------------------------------------------- dataset access
def test_load_fake_esc50(fake_esc50):
    esc = load_esc50(fake_esc50)
    assert len(esc) == 50 and esc.root == fake_esc50
    assert {Path(c.path).suffix for c in esc.clips} == {".ogg", ".wav", ".flac"}
    assert esc.clips[0].filename == "1-1000-A-0.wav" and esc.clips[0].category == "low_tone"
    np.testing.assert_array_equal(esc.super_targets, esc.targets // 10)
    np.testing.assert_array_equal(np.bincount(esc.folds), [0, 10, 10, 10, 10, 10])
    assert esc.clips[3].super_category == SUPER_CLASSES[1] and len(SUPER_CLASSES) == 5
    assert esc.class_names("sub")[41] == "rubbing_hum" and esc.class_names("super") == list(SUPER_CLASSES)


def test_esc50_root_resolution(fake_esc50, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ESC50_ROOT", raising=False)
    with pytest.raises(DatasetError) as e:
        esc50_root()
    assert "--esc50" in str(e.value) and "ESC50_ROOT" in str(e.value) and "audiosim datasets download esc50" in str(e.value)
    monkeypatch.setenv("ESC50_ROOT", str(fake_esc50))
    assert esc50_root() == fake_esc50
    with pytest.raises(DatasetError):
        esc50_root(tmp_path)  # the explicit path wins, and it is not a dataset root
    monkeypatch.setenv("ESC50_ROOT", str(tmp_path))
    with pytest.raises(DatasetError):
        esc50_root()


def test_incomplete_dataset_is_refused(fake_esc50, tmp_path):
    import shutil

    copy = tmp_path / "esc"
    shutil.copytree(fake_esc50, copy)
    next((copy / "audio").glob("2-*")).unlink()
    with pytest.raises(DatasetError, match="no audio file"):
        load_esc50(copy)


def test_download_fails_clearly_offline(tmp_path, monkeypatch):
    from audiosim.eval.esc50 import download_esc50

    monkeypatch.setenv("AUDIOSIM_OFFLINE", "1")
    with pytest.raises(DatasetError, match="ESC50_ROOT"):
        download_esc50(tmp_path)


def test_download_checks_the_content_and_unpacks_atomically(fake_esc50, tmp_path, monkeypatch):
    """The repository zip (served on 127.0.0.1) is unpacked only when its metadata is the official one."""
    import functools
    import hashlib
    import http.server
    import threading
    import zipfile

    import audiosim.eval.esc50 as E

    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "good.zip", "w") as z:
        for f in sorted(fake_esc50.rglob("*")):
            if f.is_file():
                z.write(f, f"{E.ARCHIVE_DIR}/{f.relative_to(fake_esc50)}")
    with zipfile.ZipFile(served / "bad.zip", "w") as z:  # other metadata
        z.writestr(f"{E.ARCHIVE_DIR}/meta/esc50.csv", "filename,fold,target,category,src_file,take\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("AUDIOSIM_OFFLINE", raising=False)
        monkeypatch.setattr(E, "META_SHA256", hashlib.sha256((fake_esc50 / "meta" / "esc50.csv").read_bytes()).hexdigest())
        monkeypatch.setattr(E, "ARCHIVE_URL", f"http://127.0.0.1:{httpd.server_port}/bad.zip")
        with pytest.raises(DatasetError, match="not the official metadata"):
            E.download_esc50(tmp_path / "dest", progress=False)
        assert not (tmp_path / "dest" / E.ARCHIVE_DIR).exists()  # nothing half-unpacked under the final name
        assert not [p for p in (tmp_path / "dest").iterdir() if p.is_dir()]
        (tmp_path / "dest" / E.ARCHIVE_NAME).unlink()
        monkeypatch.setattr(E, "ARCHIVE_URL", f"http://127.0.0.1:{httpd.server_port}/good.zip")
        root, digest = E.download_esc50(tmp_path / "dest", progress=False)
        assert root == tmp_path / "dest" / E.ARCHIVE_DIR and len(load_esc50(root)) == 50
        assert digest == hashlib.sha256((served / "good.zip").read_bytes()).hexdigest()
        assert E.download_esc50(tmp_path / "dest", progress=False) == (root, "")  # already there: no transfer
    finally:
        httpd.shutdown()


# --------------------------------------------------------------------------- embedding cache
def test_vectors_are_cached_and_equal_direct_embedding(fake_esc50, bench_cache, monkeypatch):
    from audiosim.engine.models.embedders import get_embedder
    from audiosim.engine.models.pooling import PoolingSpec
    from audiosim.engine.search.searcher import embed_file

    esc, X = C.esc50_vectors(embedder="logmel", pooling="mu+sigma", esc50=str(fake_esc50), cache=str(bench_cache),
                             progress=False)
    assert X.shape == (50, 336) and X.dtype == np.float32
    model = get_embedder("logmel")
    [(_, _, direct)] = embed_file(model, esc.clips[7].path, PoolingSpec.parse("mu+sigma"))
    np.testing.assert_allclose(X[7], direct, rtol=1e-5, atol=1e-6)

    calls = []
    from audiosim.engine.ingest.mappers import EmbedMapper

    real_map = EmbedMapper.__call__
    monkeypatch.setattr(EmbedMapper, "__call__", lambda self, d: calls.append(1) or real_map(self, d))  # one per clip
    _, X2 = C.esc50_vectors(embedder="logmel", pooling="mu+sigma", esc50=str(fake_esc50), cache=str(bench_cache),
                            progress=False)
    np.testing.assert_array_equal(X, X2)
    _, mu = C.esc50_vectors(embedder="logmel", pooling="mu", esc50=str(fake_esc50), cache=str(bench_cache), progress=False)
    np.testing.assert_allclose(mu, X[:, :168], rtol=1e-6)
    assert calls == []  # nothing re-embedded for a new pooling either
    frames = next(bench_cache.glob("esc50-*/logmel-*/frames"))
    assert json.loads((frames / "collection.json").read_text())["extra"]["granularity"] == "frame"


def test_only_a_changed_clip_is_re_embedded(fake_esc50, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "esc"
    shutil.copytree(fake_esc50, copy)
    cache = tmp_path / "cache"
    _, before = C.esc50_vectors(embedder="logmel", pooling="mu", esc50=str(copy), cache=str(cache), progress=False)
    esc = load_esc50(copy)
    target = Path(esc.clips[4].path)
    sf.write(str(target), synth.noise(duration_s=1.2, color="pink", rng=np.random.default_rng(9)), SR,
             format=sf.info(str(target)).format, subtype=sf.info(str(target)).subtype)
    calls = []
    from audiosim.engine.ingest.mappers import EmbedMapper

    real_map = EmbedMapper.__call__
    monkeypatch.setattr(EmbedMapper, "__call__", lambda self, d: calls.append(1) or real_map(self, d))  # one per clip
    _, after = C.esc50_vectors(embedder="logmel", pooling="mu", esc50=str(copy), cache=str(cache), progress=False)
    assert calls == [1]
    changed = np.flatnonzero(np.abs(after - before).max(axis=1) > 0)
    assert changed.tolist() == [4]


# --------------------------------------------------------------------------- the benchmark
def test_variants_expand_all_and_canonicalise():
    vs = C.make_variants(["all", "mu"], [None, "none", "power"])
    assert [v.pooling for v in vs[::2]] == ["mu", "sigma", "delta", "mu+sigma", "mu+delta", "sigma+delta", "mu+sigma+delta"]
    assert [v.postprocess for v in vs[:2]] == [None, "power:0.5"] and len(vs) == 14
    assert vs[1].name == "mu | power:0.5" and "/" not in vs[1].slug and " " not in vs[1].slug


def test_run_benchmark_end_to_end(fake_esc50, bench_cache, tmp_path):
    from audiosim.engine.search.library import Collection

    out = tmp_path / "run"
    cfg = B.BenchConfig(embedder="logmel", out=str(out), poolings=("mu",), postprocess=(None, "center+whiten:16"),
                        esc50=str(fake_esc50), cache=str(bench_cache), n_boot=50, progress=False)
    res = B.run_benchmark(cfg)
    assert list(res["variants"]) == ["mu", "mu | center+whiten:16"] and res["best_variant"] in res["variants"]
    for name in ("results.json", "report.md", "per_query.npz", "confusion_loo_cosine.png", "confusion_xfold_cosine.png",
                 "pca_super.png"):
        assert (out / name).stat().st_size > 0, name
    mu = res["variants"]["mu"]
    r = mu["retrieval"]
    assert set(r) == {"loo", "xfold"} and set(r["loo"]) == {"cosine", "euclidean"} and set(r["loo"]["cosine"]) == {"sub", "super"}
    xs = r["xfold"]["cosine"]["sub"]
    assert xs["mean_candidates"] == 40 and xs["mean_relevant"] == 4
    assert xs["metrics"]["accuracy"] >= 0.8  # ten clearly different synthetic sounds
    assert xs["random"]["accuracy"] == pytest.approx(4 / 40)
    assert xs["ci"]["accuracy"][0] <= xs["metrics"]["accuracy"] <= xs["ci"]["accuracy"][1]
    assert mu["probes"]["super"]["logreg"]["mean"] > 0.5 and len(mu["probes"]["sub"]["svm"]["fold_accuracy"]) == 5
    whitened = res["variants"]["mu | center+whiten:16"]
    assert whitened["dim"] == 16 and whitened["postprocess_fit"]["labels_used"] is False
    coll = Collection.open(whitened["collection"])
    assert coll.manifest.postprocess == "center+whiten:16" and len(coll) == 50
    esc = load_esc50(fake_esc50)
    hits = coll.searcher().search(clip=esc.clips[12].path, k=3)  # the index answers queries in the post-processed space
    assert hits[0].path == esc.clips[12].path and hits[0].score == pytest.approx(1.0, abs=1e-4)
    report = (out / "report.md").read_text()
    assert "protocol `loo`" in report and "protocol `xfold`" in report and "MAP@K thesis" in report
    saved = json.loads((out / "results.json").read_text())
    assert saved["variants"]["mu"]["retrieval"]["xfold"]["cosine"]["sub"]["metrics"]["accuracy"] == xs["metrics"]["accuracy"]
    with np.load(out / "per_query.npz") as z:
        assert z["mu/xfold/cosine/sub/correct@1"].mean() == pytest.approx(xs["metrics"]["accuracy"])
        assert z["filenames"][0] == "1-1000-A-0.wav"


def test_bench_and_compare_commands(fake_esc50, bench_cache, tmp_path):
    from audiosim.cli import main

    out = tmp_path / "cli-run"
    runner = CliRunner()
    r = runner.invoke(main, ["bench", "--embedder", "logmel", "--esc50", str(fake_esc50), "--cache", str(bench_cache),
                             "--out", str(out), "--pooling", "all", "--postprocess", "none", "--postprocess", "power+center",
                             "--bootstrap", "20", "--no-probes", "--no-plots", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "loo" in r.output and "xfold" in r.output and "best variant" in r.output
    variants = json.loads((out / "results.json").read_text())["variants"]
    assert len(variants) == 14 and "mu+sigma+delta | power:0.5+center" in variants  # the 7 mu/sigma/delta combos x 2
    r = runner.invoke(main, ["compare", f"{out}::mu", f"{out}::mu | power+center:0.5", "--bootstrap", "200"])
    assert r.exit_code == 2 and "no variant" in r.output  # variant names are canonical
    r = runner.invoke(main, ["compare", f"{out}::mu", f"{out}::mu | power:0.5+center", "--bootstrap", "200", "-k", "5"])
    assert r.exit_code == 0, r.output
    assert "protocol loo" in r.output and "protocol xfold" in r.output and "McNemar [xfold]: exact p" in r.output
    r = runner.invoke(main, ["bench", "--embedder", "logmel", "--esc50", str(fake_esc50), "--cache", str(bench_cache),
                             "--out", str(tmp_path / "bad"), "--option", "bogus=1", "--quiet"])
    assert r.exit_code == 2 and "takes no option bogus" in r.output  # --option reaches the embedder
    r = runner.invoke(main, ["datasets", "download", "esc50", "--dest", str(tmp_path / "dl")],
                      env={"AUDIOSIM_OFFLINE": "1"})
    assert r.exit_code == 2 and "ESC50_ROOT" in r.output


# --------------------------------------------------------------------------- the real ESC-50
def test_real_esc50_metadata_and_a_few_clips(esc50_root):
    from audiosim.engine.audio.decode import load_audio
    from audiosim.engine.models.embedders import get_embedder

    esc = load_esc50(esc50_root)
    assert len(esc) == 2000
    np.testing.assert_array_equal(np.bincount(esc.targets), np.full(50, 40))
    np.testing.assert_array_equal(np.bincount(esc.folds)[1:], np.full(5, 400))
    np.testing.assert_array_equal(np.bincount(esc.super_targets), np.full(5, 400))
    # sibling takes of one source recording and class share a fold (what makes xfold leak-free)
    by_src: dict[tuple, set] = {}
    for c in esc.clips:
        by_src.setdefault((c.src_file, c.target), set()).add(c.fold)
    assert all(len(f) == 1 for f in by_src.values())
    model = get_embedder("logmel")
    for clip in esc.clips[:3]:
        wave = load_audio(clip.path, sample_rate=16000)
        assert abs(wave.size - 5 * 16000) <= 160  # 5 s clips (Ogg decoding may add a few samples)
        frames, _ = model.embed_frames(wave)
        assert frames.shape[1] == 168 and np.isfinite(frames).all()


def test_bench_tags_reports_precision_at_10_from_the_real_yamnet_head(fake_esc50, tmp_path, yamnet_tflite):
    """`audiosim bench --tags` ranks the clips by each mapped AudioSet class and scores the top 10.

    The stand-in dataset has ten synthetic classes under ten ESC-50 targets, so the precisions say
    little; the number of mapped classes and the unmapped ones come from the mapping file itself.
    """
    from click.testing import CliRunner

    from audiosim.cli import main
    from audiosim.eval.tag_bench import load_mapping

    out = tmp_path / "tags"
    r = CliRunner().invoke(main, ["bench", "--tags", "--embedder", "yamnet", "--weights", str(yamnet_tflite), "--esc50",
                                  str(fake_esc50), "--cache", str(tmp_path / "cache"), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "results.json").read_text())
    mapping = load_mapping()
    stored = saved["stored_top_n"]
    assert stored["k"] == 10 and stored["top_n"] == 10
    assert stored["n_mapped"] == sum(bool(m.audioset) for m in mapping) == 47
    assert sorted(stored["unmapped"]) == sorted(m.category for m in mapping if not m.audioset)
    assert all(0.0 <= p <= 1.0 for p in stored["per_category"].values())
    assert stored["mean_precision_at_k"] == pytest.approx(np.mean(list(stored["per_category"].values())))
    # the scores are cached: a second run reads them back
    assert len(list((tmp_path / "cache").rglob("class_scores.npz"))) == 1
    r2 = CliRunner().invoke(main, ["bench", "--tags", "--embedder", "yamnet", "--weights", str(yamnet_tflite), "--esc50",
                                   str(fake_esc50), "--cache", str(tmp_path / "cache"), "--out", str(out), "--quiet"])
    assert r2.exit_code == 0 and "tag search precision@10 over 47 mapped" in r2.output
