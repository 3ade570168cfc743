"""``audiosim reembed``: same ids, paths, labels and segments with another model's vectors (equal to indexing the
folder with that model), resumes after SIGKILL, and the service serves both collections side by side."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from audiosim.engine.ingest.indexer import index_folder
from audiosim.engine.ingest.reembed import reembed
from audiosim.engine.store.store import CollectionStore as Collection
from audiosim.errors import AudiosimError, CollectionMismatchError

REPO = Path(__file__).resolve().parents[1]
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("onnx")
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 400, stride=160), torch.nn.ReLU(), torch.nn.Conv1d(8, 16, 3)).eval()
    torch.onnx.export(net, (torch.zeros(2, 1, 8000),), str(d / "tiny.onnx"), dynamo=False, input_names=["audio"],
                      output_names=["emb"], dynamic_axes={"audio": {0: "b"}, "emb": {0: "b"}})
    (d / "tiny.json").write_text(json.dumps({"sample_rate": 16000, "window_s": 0.5, "hop_s": 0.25,
                                             "input": {"layout": "BCT"}, "output": {"reduce": "mean"}}))
    return d / "tiny.onnx"


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    from audiosim.engine.audio.synth import write_demo_folder

    d = tmp_path_factory.mktemp("sounds")
    write_demo_folder(d, per_kind=4, seed=7)
    return d


@pytest.fixture(scope="module")
def source(sounds, tmp_path_factory):
    demo_folder = sounds
    root = tmp_path_factory.mktemp("src") / "logmel"
    index_folder(demo_folder, root, embedder="logmel", segment_s=1.0, segment_hop_s=0.5)
    with Collection.open(root).writer() as w:  # a relabel and a deletion: ids and labels are the source's, not a scan's
        ids = w.collection.items().ids
        w.set_labels({int(ids[0]): "relabelled"})
        w.delete([int(ids[1])])
    return root


def _rows(root) -> dict:
    t = Collection.open(root).read_table(columns=["id", "path", "offset_s", "duration_s", "label", "embedding"])
    ids = t["id"].to_pylist()
    meta = {i: (p, round(o, 6), round(d, 6), lab) for i, p, o, d, lab in
            zip(ids, t["path"].to_pylist(), t["offset_s"].to_pylist(), t["duration_s"].to_pylist(), t["label"].to_pylist())}
    emb = np.asarray(t["embedding"].to_pylist(), dtype=np.float32)
    return {"meta": meta, "vec": dict(zip(ids, emb))}


def test_reembed_keeps_rows_and_equals_indexing_with_the_new_model(source, tiny_onnx, sounds, tmp_path):
    demo_folder = sounds
    out = tmp_path / "onnx"
    report = reembed(source, out, embedder="onnx", weights=str(tiny_onnx))
    src, new = _rows(source), _rows(out)
    assert new["meta"] == src["meta"] and report.failures == [] and report.embedded_rows == len(src["meta"])
    assert Collection.open(out).embedder.name == "onnx" and Collection.open(out).segment_s == 1.0
    direct = _rows(index_folder(demo_folder, tmp_path / "direct", embedder="onnx", weights=str(tiny_onnx),
                                segment_s=1.0, segment_hop_s=0.5).collection)
    by_place = {m[:2]: direct["vec"][i] for i, m in direct["meta"].items()}
    for i, m in new["meta"].items():
        if m[:2] in by_place:
            np.testing.assert_allclose(new["vec"][i], by_place[m[:2]], rtol=1e-5, atol=1e-6)
    assert sum(m[:2] in by_place for m in new["meta"].values()) >= len(new["meta"]) - report.fallback_rows
    again = reembed(source, out, embedder="onnx", weights=str(tiny_onnx))  # nothing left to do
    assert again.embedded_rows == 0 and again.already_done == len(src["meta"])
    with pytest.raises(CollectionMismatchError):
        reembed(source, out, embedder="logmel")
    with pytest.raises(AudiosimError, match="another directory"):
        reembed(source, source, embedder="onnx", weights=str(tiny_onnx))


def test_a_changed_source_file_is_reported_not_embedded(demo_folder, tiny_onnx, tmp_path):
    import shutil

    folder = tmp_path / "f"
    shutil.copytree(demo_folder, folder)
    src = tmp_path / "src"
    index_folder(folder, src, embedder="logmel")
    victim = sorted(folder.rglob("*.wav"))[0]
    victim.write_bytes(victim.read_bytes()[:-100] + b"\0" * 100)
    report = reembed(src, tmp_path / "out", embedder="onnx", weights=str(tiny_onnx))
    assert [f["path"] for f in report.failures] == [str(victim.resolve())]
    assert "changed since it was indexed" in report.failures[0]["message"]


def _cli(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "audiosim", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kw)


def test_resumes_after_sigkill(source, tmp_path):
    from audiosim.engine.models.embedders.voice import packaged_weights

    if packaged_weights() is None:
        pytest.skip("the SIGKILL test re-embeds with the voice embedder: pip install --no-deps resemblyzer")
    total = len(_rows(source)["meta"])
    out = tmp_path / "voice"
    args = ["reembed", "--collection", str(source), "--embedder", "voice", "--out", str(out), "--flush-every", "1",
            "--no-progress"]
    proc = _cli(*args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if Collection.exists(out) and Collection.open(out).manifest.count > 0:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = Collection.open(out).manifest.count
    assert 0 < killed_at < total, f"the run was not killed midway ({killed_at} of {total} rows)"
    proc = _cli(*args, "--json")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["already_done"] == killed_at and report["embedded_rows"] == total - killed_at
    resumed = _rows(out)
    assert resumed["meta"] == _rows(source)["meta"]
    fresh = _rows(reembed(source, tmp_path / "fresh", embedder="voice").collection)
    for i, v in fresh["vec"].items():
        np.testing.assert_allclose(resumed["vec"][i], v, rtol=1e-5, atol=1e-6)


def test_service_serves_both(source, tiny_onnx, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from audiosim.service import ServeConfig, create_app

    out = tmp_path / "onnx"
    reembed(source, out, embedder="onnx", weights=str(tiny_onnx))
    some_id = next(iter(_rows(source)["meta"]))
    app = create_app(ServeConfig(collections=(("logmel", source), ("onnx", out)), warm=False))
    with TestClient(app) as client:
        answers = {name: client.post(f"/api/collections/{name}/search", json={"id": some_id, "k": 3}).json()
                   for name in ("logmel", "onnx")}
    assert answers["logmel"]["hits"][0]["id"] == some_id == answers["onnx"]["hits"][0]["id"]
    assert answers["logmel"]["hits"][0]["path"] == answers["onnx"]["hits"][0]["path"]
