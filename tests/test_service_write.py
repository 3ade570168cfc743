"""The served collection changes under a running server: a concurrent `audiosim index` run, and --allow-write.

Proves: while another process (`audiosim index`, a subprocess) commits new revisions, every
search the server answers succeeds, and afterwards the server serves the new revision (new
size, new labels, new files found) without a restart; with --allow-write an index job over a
folder under --root runs in the background, reports progress and its ingest report, and a
deleted item disappears from items and results; jobs outside --root are refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'audiosim[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

import audiosim  # noqa: E402
from audiosim.engine.audio.synth import write_demo_folder  # noqa: E402
from audiosim.service import ServeConfig, create_app  # noqa: E402

REPO_PARENT = Path(audiosim.__file__).resolve().parent.parent


@pytest.fixture
def staged(tmp_path):
    """Five kinds written to staging/; the served folder starts with all but 'hum'."""
    staging = tmp_path / "staging"
    write_demo_folder(staging, per_kind=4, seed=7)
    served = tmp_path / "root" / "sounds"
    served.mkdir(parents=True)
    for kind in ("tone", "chirp", "noise", "clicks"):
        shutil.copytree(staging / kind, served / kind)
    coll = tmp_path / "coll"
    audiosim.index_folder(served, coll, embedder="logmel")
    return staging, served, coll


def _wait_job(client, job_id, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


def test_searches_keep_working_while_another_process_indexes(staged):
    staging, served, coll = staged
    app = create_app(ServeConfig(collections=(("c", coll),)))
    with TestClient(app) as client:
        before = client.get("/api/collections/c").json()
        assert before["size"] == 16 and "hum" not in {lc["label"] for lc in before["labels"]}
        hum_query = staging / "hum" / "hum_00.wav"
        clip = hum_query.read_bytes()

        statuses, revisions = [], set()
        stop = threading.Event()

        def hammer():
            i = 0
            while not stop.is_set():
                if i % 3:
                    r = client.post("/api/collections/c/search", json={"id": i % 16, "k": 3})
                else:
                    r = client.post("/api/collections/c/search", files={"file": ("q.wav", clip, "audio/wav")},
                                    data={"k": "3"})
                statuses.append((r.status_code, r.text[:200] if r.status_code != 200 else ""))
                if r.status_code == 200:
                    revisions.add(r.json()["revision"])
                i += 1

        shutil.copytree(staging / "hum", served / "hum")
        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            env = dict(os.environ, PYTHONPATH=str(REPO_PARENT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            run = subprocess.run([sys.executable, "-m", "audiosim", "index", str(served), "--collection", str(coll),
                                  "--quiet", "--flush-every", "1"], capture_output=True, text=True, env=env, timeout=300)
            assert run.returncode == 0, run.stderr
            time.sleep(0.5)  # let the hammer see the final revision too
        finally:
            stop.set()
            worker.join(timeout=60)

        bad = [s for s in statuses if s[0] != 200]
        assert not bad, bad[:3]
        assert len(statuses) > 5
        after = client.get("/api/collections/c").json()
        assert after["revision"] > before["revision"] and after["size"] == 20
        assert {lc["label"]: lc["count"] for lc in after["labels"]}["hum"] == 4
        assert max(revisions) == after["revision"]
        r = client.post("/api/collections/c/search", files={"file": ("q.wav", clip, "audio/wav")}, data={"k": "4"})
        assert [h["label"] for h in r.json()["hits"]] == ["hum"] * 4
        assert client.get("/healthz").json()["collections"]["c"] == after["revision"]


def test_index_job_and_delete_with_allow_write(staged):
    staging, served, coll = staged
    root = served.parent
    shutil.copytree(staging / "hum", root / "more" / "hum")
    app = create_app(ServeConfig(collections=(("c", coll),), allow_write=True, root=root, warm=False))
    with TestClient(app) as client:
        assert client.get("/api/collections").json()["write_enabled"] is True
        for bad in ("../", "/etc", str(root.parent), "more/../../", "missing"):
            r = client.post("/api/collections/c/index", json={"folder": bad})
            assert r.status_code == 403, (bad, r.text)
        assert client.post("/api/collections/nope/index", json={"folder": "more"}).status_code == 404
        assert client.post("/api/collections/c/index", json={"folder": "more", "extra": 1}).status_code == 422

        r = client.post("/api/collections/c/index", json={"folder": "more"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["state"] in ("queued", "running", "done") and job["params"]["folder"] == "more"
        assert job["url"] == f"/api/jobs/{job['id']}"
        done = _wait_job(client, job["id"])
        assert done["state"] == "done", done
        assert done["result"]["new"] == 4 and done["progress"]["files_done"] == 4
        info = client.get("/api/collections/c").json()
        assert info["size"] == 20 and info["sources"] == ["sounds", "more"]
        hum_hit = client.post("/api/collections/c/search", json={"id": 0, "k": 20, "label": "hum"}).json()["hits"][0]
        assert hum_hit["path"].startswith("hum/")  # relative to the folder it was indexed from
        assert any(j["id"] == job["id"] for j in client.get("/api/jobs").json())
        assert client.get("/api/jobs/nope").status_code == 404

        victim = hum_hit["id"]
        r = client.delete(f"/api/collections/c/items/{victim}")
        assert r.status_code == 200 and r.json()["deleted"] == 1 and r.json()["revision"] > info["revision"]
        assert client.get(f"/api/collections/c/items/{victim}").status_code == 404
        assert client.delete(f"/api/collections/c/items/{victim}").status_code == 404
        hits = client.post("/api/collections/c/search", json={"id": 0, "k": 20}).json()["hits"]
        assert victim not in {h["id"] for h in hits} and len(hits) == 19


def test_a_file_symlink_under_root_pointing_outside_is_neither_indexed_nor_served(staged, tmp_path):
    """Issue 18: a *file* symlink inside --root that points outside it was indexed by a service job and then served."""
    staging, served, coll = staged
    root = served.parent
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.wav"
    shutil.copy(next((staging / "hum").glob("*.wav")), secret)
    shutil.copytree(staging / "hum", root / "more" / "hum")
    (root / "more" / "hum" / "link.wav").symlink_to(secret)
    app = create_app(ServeConfig(collections=(("c", coll),), allow_write=True, root=root, warm=False))
    with TestClient(app) as client:
        r = client.post("/api/collections/c/index", json={"folder": "more"})
        assert r.status_code == 202, r.text
        done = _wait_job(client, r.json()["id"])
        assert done["state"] == "done", done
        assert done["result"]["new"] == 4  # the four real files, not the link
        assert any("link.wav" in s["path"] and "outside" in s["message"] for s in done["result"]["skipped"]), done
        assert not any(p.endswith("link.wav") for p in audiosim.open_collection(coll).files())

    # a collection that holds such a link already (indexed by an older version): its audio is refused
    audiosim.index_folder(root / "more", coll, embedder="logmel")
    items = audiosim.open_collection(coll).searcher().items
    linked = int(next(i for i, c in zip(items.ids, items.path_code) if items.paths[c].endswith("link.wav")))
    with TestClient(create_app(ServeConfig(collections=(("c", coll),), allow_write=True, root=root, warm=False))) as client:
        for url in (f"/api/collections/c/items/{linked}/audio", f"/api/collections/c/items/{linked}/spectrogram.png"):
            r = client.get(url)
            assert r.status_code == 403 and "outside" in r.json()["error"]["message"], r.text


def test_an_index_job_without_label_from_keeps_the_folder_s_remembered_label_source(tmp_path):
    """Issue 21 item 6 over HTTP: a folder indexed with label_from='none' stays unlabelled when a job adds files."""
    root = tmp_path / "root"
    staging = tmp_path / "staging"
    write_demo_folder(staging, per_kind=2, seed=3)
    served = root / "sounds"
    shutil.copytree(staging / "tone", served / "tone")
    coll = tmp_path / "coll"
    audiosim.index_folder(served, coll, embedder="logmel", label_from="none")
    shutil.copytree(staging / "chirp", served / "chirp")
    app = create_app(ServeConfig(collections=(("c", coll),), allow_write=True, root=root, warm=False))
    with TestClient(app) as client:
        r = client.post("/api/collections/c/index", json={"folder": "sounds"})
        assert r.status_code == 202, r.text
        assert _wait_job(client, r.json()["id"])["state"] == "done"
    labels = {h.label for h in audiosim.open_collection(coll).searcher().search(clip=next((served / "chirp").glob("*.wav")), k=10)}
    assert labels == {None}
