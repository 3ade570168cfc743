"""`audiosim serve`'s REST API against a real collection (weight-free logmel on synthetic sounds).

Proves: an uploaded clip ranks clips of its own kind first and gives exactly the Python API's
hits; by-id, batch and vector searches equal the library's; every filter is applied; a time
range of the query is honoured; Range requests give 206 and exactly the requested bytes (the
original file for whole-file items, an encoded WAV of exactly the segment for segment items);
spectrograms are PNGs of the asked size, cached with an ETag; 404/413/415/400 answers are JSON
errors; path traversal is refused everywhere a path could enter; the token is required off
loopback; CORS is off unless asked; metrics and OpenAPI describe the service.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'audiosim[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

import audiosim  # noqa: E402
from audiosim.engine.audio.synth import write_demo_folder  # noqa: E402
from audiosim.service import ServeConfig, create_app  # noqa: E402
from audiosim.service.errors import ServeConfigError  # noqa: E402

KINDS = ("tone", "chirp", "noise", "clicks", "hum")
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("svc_demo")
    write_demo_folder(d, per_kind=4, seed=7)
    return d


@pytest.fixture(scope="module")
def coll_dir(demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("svc_coll") / "demo"
    audiosim.index_folder(demo, root, embedder="logmel")
    return root


@pytest.fixture(scope="module")
def queries(tmp_path_factory):
    """One fresh clip per kind, not in the collection."""
    d = tmp_path_factory.mktemp("svc_queries")
    return {p.parent.name: p for p in write_demo_folder(d, per_kind=1, seed=99)}


@pytest.fixture(scope="module")
def client(coll_dir):
    app = create_app(ServeConfig(collections=(("demo", coll_dir),)))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def searcher(coll_dir):
    return audiosim.open_collection(coll_dir).searcher()


def upload(client, path, name="demo", **fields):
    with open(path, "rb") as f:
        return client.post(f"/api/collections/{name}/search", files={"file": (path.name, f, "application/octet-stream")},
                           data={k: str(v) for k, v in fields.items()})


def valid_search(r) -> dict:
    """A 200 search answer that is exactly what the OpenAPI schema says (the route builds it without pydantic)."""
    from audiosim.service.schemas import SearchResponse

    assert r.status_code == 200, r.text
    body = r.json()
    assert SearchResponse.model_validate(body).model_dump(mode="json") == body
    return body


def assert_error(r, status, code=None):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["status"] == status and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code


# ---------------------------------------------------------------- collections
def test_collections_listed_and_described(client, coll_dir, demo):
    r = client.get("/api/collections")
    assert r.status_code == 200
    [c] = r.json()["collections"]
    assert c["name"] == "demo" and c["size"] == 20 and c["embedder"] == "logmel"
    assert r.json()["write_enabled"] is False and r.json()["max_upload_mb"] == 50

    info = client.get("/api/collections/demo").json()
    coll = audiosim.open_collection(coll_dir)
    assert info["revision"] == coll.revision and info["size"] == len(coll) == 20
    assert info["embedder"]["name"] == "logmel" and info["embedder"]["dim"] == coll.embedder.dim
    assert info["pooling"] == coll.pooling.name and info["metric"] == "cosine" and info["dim"] == coll.dim
    assert {lc["label"]: lc["count"] for lc in info["labels"]} == {k: 4 for k in KINDS}
    assert info["unlabelled"] == 0 and info["segment_s"] is None
    assert info["sources"] == [demo.name]  # folder names, not server paths


# ---------------------------------------------------------------- search
@pytest.mark.parametrize("kind", KINDS)
def test_upload_ranks_same_kind_first_and_equals_python_api(client, searcher, queries, kind):
    r = upload(client, queries[kind], k=4)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [h["label"] for h in body["hits"]] == [kind] * 4
    expected = searcher.search(clip=queries[kind], k=4)
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected]
    np.testing.assert_allclose([h["score"] for h in body["hits"]], [h.score for h in expected], rtol=1e-5)
    hit = body["hits"][0]
    assert hit["rank"] == 1 and hit["path"].startswith(f"{kind}/") and hit["file_name"] == hit["path"].split("/")[-1]
    assert hit["audio_url"] == f"/api/collections/demo/items/{hit['id']}/audio"
    assert hit["spectrogram_url"].endswith(f"/items/{hit['id']}/spectrogram.png")
    assert body["query"] == {"kind": "upload", "id": None, "ids": None, "file_name": queries[kind].name,
                             "start_s": None, "end_s": None, "tag": None, "text": None}
    t = body["timing"]
    assert t["decode_ms"] > 0 and t["embed_ms"] > 0 and t["search_ms"] > 0 and t["queue_ms"] >= 0
    assert t["server_ms"] >= t["total_ms"] >= t["search_ms"]


def test_upload_time_range_is_the_library_time_range(client, searcher, queries):
    r = upload(client, queries["chirp"], k=5, start_s=0.25, end_s=1.0)
    assert r.status_code == 200, r.text
    expected = searcher.search(clip=queries["chirp"], k=5, start_s=0.25, end_s=1.0)
    assert [h["id"] for h in r.json()["hits"]] == [h.id for h in expected]
    np.testing.assert_allclose([h["score"] for h in r.json()["hits"]], [h.score for h in expected], rtol=1e-5)
    assert r.json()["query"]["start_s"] == 0.25 and r.json()["query"]["end_s"] == 1.0
    whole = searcher.search(clip=queries["chirp"], k=5)
    assert [h.score for h in whole] != [h.score for h in expected]  # the range did change the query
    assert_error(upload(client, queries["chirp"], start_s=60.0), 400)  # past the end of the clip
    assert_error(upload(client, queries["chirp"], start_s=1.0, end_s=0.5), 400)


def test_upload_of_a_collection_file_skips_that_file_when_asked(client, searcher, demo, tmp_path):
    """'Skip the query's own file' applies to an uploaded copy of a collection file (matched by content sha256)."""
    import shutil

    own = sorted(demo.glob("chirp/*.wav"))[0]
    copy = tmp_path / "renamed.wav"  # another name, the same bytes
    shutil.copyfile(own, copy)
    own_ids = {int(i) for i, code in zip(searcher.items.ids, searcher.items.path_code)
               if searcher.items.paths[code] == str(own.resolve())}
    assert own_ids
    kept = valid_search(upload(client, copy, k=5))["hits"]
    assert kept[0]["id"] in own_ids and kept[0]["score"] == pytest.approx(1.0, abs=1e-4)
    skipped = valid_search(upload(client, copy, k=5, exclude_same_file="true"))["hits"]
    assert len(skipped) == 5 and not own_ids & {h["id"] for h in skipped}
    assert [h["id"] for h in skipped] == [h["id"] for h in kept if h["id"] not in own_ids][:4] + [skipped[4]["id"]]
    fresh = write_demo_folder(tmp_path / "fresh", per_kind=1, seed=123)[0]
    assert valid_search(upload(client, fresh, k=3, exclude_same_file="true"))["hits"] == \
        valid_search(upload(client, fresh, k=3))["hits"]  # a clip not in the collection: nothing to skip


def test_search_by_id_equals_python_api(client, searcher):
    r = client.post("/api/collections/demo/search", json={"id": 5, "k": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = searcher.search(id=5, k=6)
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected]
    assert body["hits"][0]["id"] == 5 and body["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert body["query"]["kind"] == "id" and body["query"]["id"] == 5
    assert body["timing"]["embed_ms"] == 0 and body["timing"]["queue_ms"] is None

    r = client.post("/api/collections/demo/search", json={"id": 5, "k": 6, "exclude_same_file": True})
    ids = [h["id"] for h in r.json()["hits"]]
    assert 5 not in ids and len(ids) == 6
    assert ids == [h.id for h in searcher.search(id=5, k=6, exclude_same_file=True)]


def test_batch_of_ids_equals_single_searches(client):
    r = client.post("/api/collections/demo/search", json={"ids": [0, 7, 13], "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hits"] is None and len(body["results"]) == 3 and body["query"]["ids"] == [0, 7, 13]
    for qid, row in zip([0, 7, 13], body["results"]):
        single = client.post("/api/collections/demo/search", json={"id": qid, "k": 3}).json()["hits"]
        assert [h["id"] for h in row] == [h["id"] for h in single]


def test_vector_and_vectors_search(client, coll_dir):
    coll = audiosim.open_collection(coll_dir)
    v = coll.vectors([9])[0]
    r = client.post("/api/collections/demo/search", json={"vector": v.tolist(), "k": 2})
    assert r.status_code == 200, r.text
    assert r.json()["hits"][0]["id"] == 9
    X = coll.vectors([2, 11])
    r = client.post("/api/collections/demo/search", json={"vectors": X.tolist(), "k": 1})
    assert [row[0]["id"] for row in r.json()["results"]] == [2, 11]
    assert_error(client.post("/api/collections/demo/search", json={"vector": [0.1, 0.2], "k": 2}), 400)
    assert_error(client.post("/api/collections/demo/search", json={"vectors": [[0.1, 0.2], [0.3]], "k": 2}), 400)


def test_filters(client, queries, searcher):
    r = client.post("/api/collections/demo/search", json={"id": 0, "k": 20, "label": ["hum", "noise"]})
    labels = [h["label"] for h in r.json()["hits"]]
    assert len(labels) == 8 and set(labels) == {"hum", "noise"}
    r = upload(client, queries["tone"], k=3, label="clicks")
    assert [h["label"] for h in r.json()["hits"]] == ["clicks"] * 3
    r = client.post("/api/collections/demo/search", json={"id": 0, "k": 20, "path_prefix": "chirp"})
    paths = [h["path"] for h in r.json()["hits"]]
    assert len(paths) == 4 and all(p.startswith("chirp/") for p in paths)
    durations = dict(zip(searcher.items.ids.tolist(), searcher.items.duration_s.tolist()))
    lo, hi = 2.0, 2.6
    r = client.post("/api/collections/demo/search",
                    json={"id": 0, "k": 20, "min_duration_s": lo, "max_duration_s": hi})
    got = {h["id"] for h in r.json()["hits"]}
    assert got == {i for i, d in durations.items() if lo <= d <= hi} and got
    r = client.post("/api/collections/demo/search", json={"id": 0, "k": 5, "label": "no-such-label"})
    assert r.status_code == 200 and r.json()["hits"] == []
    for bad in ({"id": 0, "path_prefix": "../etc"}, {"id": 0, "path_prefix": "/etc"}, {"id": 0, "k": 0},
                {"id": 0, "k": 5000}, {"id": 0, "min_duration_s": -1}):
        assert_error(client.post("/api/collections/demo/search", json=bad), 400)


def test_bad_search_requests(client, queries):
    s = "/api/collections/demo/search"
    assert_error(client.post(s, json={"k": 3}), 400, "bad_request")  # no query
    assert_error(client.post(s, json={"id": 1, "vector": [0.0]}), 400)  # two queries
    assert_error(client.post(s, json={"id": 1, "unknown_field": 2}), 400)
    assert_error(client.post(s, content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    assert_error(client.post(s, content=b"id=1", headers={"Content-Type": "text/plain"}), 415)
    assert_error(client.post(s, files={"clip": ("a.wav", b"RIFF", "audio/wav")}), 400)  # wrong field name
    assert_error(client.post(s, json={"id": 999999}), 404, "not_found")
    assert_error(client.post(s, json={"ids": [1, 999999]}), 404, "not_found")
    assert_error(client.post("/api/collections/nope/search", json={"id": 1}), 404, "not_found")
    assert_error(upload(client, queries["tone"], name="nope"), 404)


def test_search_answers_match_the_schema(client, queries, coll_dir):
    """Upload, id, batch, vector and vectors answers validate against SearchResponse, field for field."""
    for body in (valid_search(upload(client, queries["tone"], k=4, start_s=0.2)),
                 valid_search(client.post("/api/collections/demo/search", json={"id": 1, "k": 3})),
                 valid_search(client.post("/api/collections/demo/search", json={"ids": [1, 2], "k": 2}))):
        assert body["hits"] or body["results"]
    dim = audiosim.open_collection(coll_dir).dim
    one = valid_search(client.post("/api/collections/demo/search", json={"vector": [0.1] * dim, "k": 2}))
    many = valid_search(client.post("/api/collections/demo/search", json={"vectors": [[0.1] * dim, [0.2] * dim], "k": 2}))
    assert len(one["hits"]) == 2 and [len(r) for r in many["results"]] == [2, 2]


def test_non_audio_upload_is_415_json(client, tmp_path):
    for name, content in (("notes.txt", b"this is text, not audio\n" * 50), ("fake.wav", b"RIFF\x00\x00junk" * 20),
                          ("empty.wav", b"")):
        r = client.post("/api/collections/demo/search", files={"file": (name, content, "audio/wav")})
        assert r.status_code in (415, 422), r.text
        assert r.json()["error"]["code"] in ("unsupported_media", "unusable_audio")
        assert name in r.json()["error"]["message"] and "/tmp" not in r.json()["error"]["message"]
    r = client.post("/api/collections/demo/search", files={"file": ("notes.txt", b"plain text " * 100, "text/plain")})
    assert_error(r, 415, "unsupported_media")


def test_upload_too_large_is_413(coll_dir, tmp_path):
    import soundfile as sf

    from audiosim.engine.audio.synth import machine_hum

    small = tmp_path / "small.wav"  # 0.8 s of 16-bit mono at 16 kHz: 25 kB, under the limit
    sf.write(small, machine_hum(duration_s=0.8, sr=16000), 16000, subtype="PCM_16")
    app = create_app(ServeConfig(collections=(("demo", coll_dir),), max_upload_mb=0.05, warm=False))
    with TestClient(app) as c:
        big = np.random.default_rng(0).integers(0, 255, 200_000, dtype=np.uint8).tobytes()
        r = c.post("/api/collections/demo/search", files={"file": ("big.wav", big, "audio/wav")})
        assert_error(r, 413, "too_large")
        assert "0.05 MB" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: the limit is enforced on the streamed bytes
            boundary = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n"
            yield boundary
            for i in range(0, len(big), 8192):
                yield big[i:i + 8192]
            yield b"\r\n--xyz--\r\n"

        r = c.post("/api/collections/demo/search", content=chunks(),
                   headers={"Content-Type": "multipart/form-data; boundary=xyz"})
        assert_error(r, 413, "too_large")
        r = upload(c, small, k=2)  # a small clip still passes
        assert r.status_code == 200 and r.json()["hits"][0]["label"] == "hum"


# ---------------------------------------------------------------- items, audio, spectrograms
def test_item_metadata(client, searcher):
    r = client.get("/api/collections/demo/items/6")
    assert r.status_code == 200
    it = r.json()
    lib = searcher.item(6)
    assert it["id"] == 6 and it["label"] == lib.label and it["duration_s"] == pytest.approx(lib.duration_s)
    assert it["content_sha256"] == lib.content_sha256 and it["segment"] is False
    assert lib.path.endswith(it["path"]) and not it["path"].startswith("/")
    assert it["audio"] == ("original" if it["file_name"].rsplit(".", 1)[-1] in ("wav", "flac", "ogg") else "wav")
    assert_error(client.get("/api/collections/demo/items/424242"), 404)
    assert client.get("/api/collections/demo/items/-1").status_code in (400, 404, 422)


def test_audio_whole_file_range_requests(client, searcher):
    item = searcher.item(3)
    data = open(item.path, "rb").read()
    url = "/api/collections/demo/items/3/audio"
    full = client.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes" and int(full.headers["content-length"]) == len(data)
    assert full.headers["content-type"].startswith("audio/")
    for header, (a, b) in (("bytes=100-199", (100, 199)), ("bytes=0-0", (0, 0)), ("bytes=1000-", (1000, len(data) - 1)),
                           ("bytes=-50", (len(data) - 50, len(data) - 1)),
                           (f"bytes={len(data) - 10}-{len(data) + 500}", (len(data) - 10, len(data) - 1))):
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == data[a:b + 1], header
        assert r.headers["content-range"] == f"bytes {a}-{b}/{len(data)}"
        assert int(r.headers["content-length"]) == b - a + 1
    r = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    r = client.get(url, headers={"Range": "bytes=0-9,20-29"})  # multi-range: the whole body is a valid answer
    assert r.status_code == 200 and r.content == data
    r = client.get(url, headers={"Range": "bytes=10-19", "If-Range": '"some-other-etag"'})
    assert r.status_code == 200 and r.content == data
    r = client.get(url, headers={"Range": "bytes=10-19", "If-Range": full.headers["etag"]})
    assert r.status_code == 206 and r.content == data[10:20]
    head = client.head(url)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(data)


def test_audio_of_segment_items_is_a_wav_of_exactly_the_segment(demo, tmp_path):
    import soundfile as sf

    root = tmp_path / "seg"
    audiosim.index_folder(demo / "chirp", root, embedder="logmel", segment_s=1.0)
    app = create_app(ServeConfig(collections=(("seg", root),), warm=False))
    searcher = audiosim.open_collection(root).searcher()
    with TestClient(app) as c:
        info = c.get("/api/collections/seg").json()
        assert info["segment_s"] == 1.0
        items = searcher.items
        pos = int(np.flatnonzero(items.offset_s > 0)[0])  # a segment that does not start the file
        item = searcher.item(int(items.ids[pos]))
        meta = c.get(f"/api/collections/seg/items/{item.id}").json()
        assert meta["segment"] is True and meta["audio"] == "wav" and meta["offset_s"] == pytest.approx(item.offset_s)
        r = c.get(meta["audio_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        got, sr = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
        with sf.SoundFile(item.path) as f:
            assert sr == f.samplerate
            f.seek(int(round(item.offset_s * sr)))
            want = f.read(int(round(item.duration_s * sr)), dtype="float32", always_2d=True)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2 / 32768)  # 16-bit PCM
        part = c.get(meta["audio_url"], headers={"Range": "bytes=44-1043"})
        assert part.status_code == 206 and part.content == r.content[44:1044]
        assert part.headers["content-range"] == f"bytes 44-1043/{len(r.content)}"


def test_region_hits_play_and_draw_the_whole_region(tmp_path, monkeypatch):
    """A region hit's audio and picture cover its start..end (not 2 s of its best segment); spans are checked."""
    import soundfile as sf
    from PIL import Image

    from audiosim.engine.audio import synth
    from audiosim.service.media import SPECTROGRAM_SR, mono_at, read_span, spectrogram_png

    folder = tmp_path / "rec"
    folder.mkdir()
    rng = np.random.default_rng(5)
    x = 0.05 * synth.noise(duration_s=30.0, color="pink", rng=rng)  # synthetic: a chirp at 10-14 s in pink noise
    x[16000 * 10:16000 * 14] += 0.8 * synth.chirp(f0=300, f1=4000, duration_s=4.0, rng=rng)
    sf.write(folder / "field.wav", x.astype(np.float32), 16000)
    query = tmp_path / "q.wav"
    sf.write(query, x[16000 * 10:16000 * 14].astype(np.float32), 16000)
    coll = tmp_path / "coll"
    audiosim.index_folder(folder, coll, embedder="logmel", segment_s=2.0, segment_hop_s=1.0)
    with TestClient(create_app(ServeConfig(collections=(("rec", coll),), warm=False))) as c:
        best = valid_search(upload(c, query, name="rec", k=1))["hits"][0]
        start, end = best["offset_s"], best["end_s"]
        assert best["segments"] >= 2 and end - start >= 3.0 and start <= 10.5 and end >= 13.5
        assert best["audio_url"].endswith(f"/audio?start={start!r}&end={end!r}")
        r = c.get(best["audio_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        got, sr = sf.read(io.BytesIO(r.content), dtype="float32")
        assert sr == 16000 and len(got) == round((end - start) * sr)
        np.testing.assert_allclose(got, x[round(start * sr):round(end * sr)], atol=2 / 32768)
        part = c.get(best["audio_url"], headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == r.content[:100]

        png = c.get(best["spectrogram_url"])
        assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (320, 96)
        samples, rate = read_span(folder / "field.wav", offset_s=start, duration_s=end - start)
        assert png.content == spectrogram_png(mono_at(samples, rate, SPECTROGRAM_SR), SPECTROGRAM_SR)  # the oracle
        item = f"/api/collections/rec/items/{best['id']}"
        assert c.get(f"{item}/spectrogram.png").content != png.content  # the best segment alone differs
        assert c.get(f"{item}/spectrogram.png").headers["etag"] != png.headers["etag"]

        whole = c.get(f"{item}/audio", params={"start": 28.5})  # start alone: to the end of the file
        assert len(sf.read(io.BytesIO(whole.content))[0]) == round(1.5 * 16000)
        assert len(sf.read(io.BytesIO(c.get(f"{item}/audio", params={"start": 29, "end": 700}).content))[0]) == 16000
        monkeypatch.setattr("audiosim.service.routes.items.MAX_SPAN_S", 5.0)
        for params, words in (({"start": 5, "end": 5}, "must be after start"), ({"start": 31, "end": 32}, "past the end"),
                              ({"start": 1, "end": 7}, "at most 5 s")):
            for route in ("audio", "spectrogram.png"):
                r = c.get(f"{item}/{route}", params=params)
                assert r.status_code == 400 and words in r.json()["error"]["message"], (params, r.status_code)
        assert c.get(f"{item}/audio", params={"start": -1, "end": 2}).status_code == 422
        assert c.get(f"{item}/audio", params={"start": "nan", "end": 2}).status_code == 422


def test_spectrogram_png_sized_and_cached(client):
    from PIL import Image

    url = "/api/collections/demo/items/2/spectrogram.png"
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (320, 96)
    again = client.get(url, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get(url).content == r.content
    ctx = client.app.state.audiosim
    assert ctx.spectrogram_cache.hits >= 1
    small = client.get(url, params={"width": 100, "height": 40})
    assert Image.open(io.BytesIO(small.content)).size == (100, 40)
    assert client.get(url, params={"width": 100000}).status_code == 422


def test_tone_spectrogram_has_energy_at_its_pitch(client, searcher):
    """Golden check of the picture: a harmonic tone near 380-520 Hz is bright in the low rows, not the top ones."""
    from PIL import Image

    tone_id = next(int(i) for i, code in zip(searcher.items.ids, searcher.items.label_code)
                   if searcher.items.labels[code] == "tone")
    png = client.get(f"/api/collections/demo/items/{tone_id}/spectrogram.png").content
    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    rows = img.mean(axis=1)  # row 0 is the top (highest frequency)
    assert rows[len(rows) // 2:].max() > 2 * rows[: len(rows) // 4].mean()


def test_missing_file_is_410(tmp_path):
    import shutil

    folder = tmp_path / "f"
    write_demo_folder(folder, per_kind=1, seed=3)
    root = tmp_path / "c"
    audiosim.index_folder(folder, root, embedder="logmel")
    app = create_app(ServeConfig(collections=(("c", root),), warm=False))
    with TestClient(app) as c:
        item = audiosim.open_collection(root).searcher().item(0)
        shutil.move(item.path, tmp_path / "moved")
        assert_error(c.get("/api/collections/c/items/0/audio"), 410, "gone")
        assert_error(c.get("/api/collections/c/items/0/spectrogram.png"), 410, "gone")


# ---------------------------------------------------------------- safety
TRAVERSALS = [
    "/api/collections/demo/items/..%2F..%2F..%2Fetc%2Fpasswd/audio",
    "/api/collections/demo/items/%2Fetc%2Fpasswd/audio",
    "/api/collections/demo/items/..%252F..%252Fetc%252Fpasswd/audio",
    "/api/collections/..%2F..%2F..%2Fetc/items/0/audio",
    "/api/collections/%2e%2e/items/0/audio",
    "/api/collections/demo/items/0/audio/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static//etc/passwd",
    "/api/collections/demo/items/0/spectrogram.png/../../../../etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_refused(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404, 405, 422), (path, r.status_code)
    assert b"root:" not in r.content
    assert r.headers["content-type"].startswith("application/json")


def test_audio_is_only_served_by_id(client, searcher):
    item = searcher.item(0)
    r = client.get("/api/collections/demo/items/0/audio", params={"path": "/etc/passwd", "file": "/etc/passwd"})
    assert r.status_code == 200 and r.content == open(item.path, "rb").read()
    paths = [route.path for route in client.app.routes if hasattr(route, "path")]
    assert not any("{path" in p or "{file" in p for p in paths)


def test_token_required_off_loopback(coll_dir):
    with pytest.raises(ServeConfigError, match="--token"):
        ServeConfig(collections=(("demo", coll_dir),), host="0.0.0.0").check()
    with pytest.raises(ServeConfigError, match="--token"):
        ServeConfig(collections=(("demo", coll_dir),), host="192.168.1.20").check()
    ServeConfig(collections=(("demo", coll_dir),), host="::1").check()  # loopback: no token needed
    app = create_app(ServeConfig(collections=(("demo", coll_dir),), host="0.0.0.0", token=TOKEN, warm=False))
    with TestClient(app) as c:
        r = c.get("/api/collections")
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_error(c.get("/api/collections", headers={"Authorization": "Bearer wrong-token-xx"}), 401)
        assert_error(c.get("/api/collections", headers={"Authorization": f"Basic {TOKEN}"}), 401)
        assert_error(c.post("/api/collections/demo/search", json={"id": 0}), 401)
        assert_error(c.get("/api/collections/demo/items/0/audio"), 401)
        assert_error(c.get("/metrics"), 401)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/api/collections", headers=auth).status_code == 200
        assert c.post("/api/collections/demo/search", json={"id": 0}, headers=auth).status_code == 200
        assert c.get("/metrics", headers=auth).status_code == 200
        c.cookies.set("audiosim_token", TOKEN)  # what the page sets, for <audio> and <img>
        assert c.get("/api/collections/demo/items/0/audio").status_code == 200
        c.cookies.clear()
        health = c.get("/healthz")
        assert health.status_code == 200 and health.json()["collections"] == {}
        assert c.get("/").status_code == 200  # the page itself holds no data


def test_cors_only_when_asked(client, coll_dir):
    origin = {"Origin": "https://elsewhere.example"}
    r = client.get("/api/collections", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    app = create_app(ServeConfig(collections=(("demo", coll_dir),), cors=("https://app.example",), warm=False))
    with TestClient(app) as c:
        r = c.get("/api/collections", headers={"Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-origin" not in c.get("/api/collections", headers=origin).headers
        pre = c.options("/api/collections/demo/search", headers={"Origin": "https://app.example",
                                                                  "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 200


def test_read_only_by_default(client):
    assert_error(client.delete("/api/collections/demo/items/0"), 403, "forbidden")
    assert_error(client.post("/api/collections/demo/index", json={"folder": "."}), 403, "forbidden")
    assert client.get("/api/collections/demo/items/0").status_code == 200


def test_busy_pool_answers_503_with_retry_after(coll_dir, queries):
    import threading

    app = create_app(ServeConfig(collections=(("demo", coll_dir),), workers=1, queue=0, warm=False))
    with TestClient(app) as c:
        release = threading.Event()
        blocker = app.state.audiosim.pool.submit(release.wait, 30)  # occupies the only worker
        try:
            r = upload(c, queries["tone"], k=2)
            assert_error(r, 503, "busy")
            assert int(r.headers["retry-after"]) >= 1
            assert c.post("/api/collections/demo/search", json={"id": 0}).status_code == 200  # no model: not queued
        finally:
            release.set()
            blocker.result(timeout=30)
        assert upload(c, queries["tone"], k=2).status_code == 200
        assert "audiosim_inference_rejected_total 1.0" in c.get("/metrics").text


# ---------------------------------------------------------------- page, docs, health, metrics
def test_page_docs_and_health(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="static/app.js"' in page.text and 'href="static/style.css"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "`audiosim " not in client.get("/static/app.js").text  # the page tells web users no command to run
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/api/collections", "/api/collections/{name}", "/api/collections/{name}/search",
                 "/api/collections/{name}/items/{item_id}", "/api/collections/{name}/items/{item_id}/audio",
                 "/api/collections/{name}/items/{item_id}/spectrogram.png", "/api/collections/{name}/duplicates",
                 "/api/collections/{name}/map", "/healthz", "/metrics"):
        assert path in spec["paths"], path
    body = spec["paths"]["/api/collections/{name}/search"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["collections"] == {"demo": client.get("/api/collections/demo").json()["revision"]}
    assert_error(client.get("/api/no/such/thing"), 404, "not_found")


def test_docs_and_redoc_are_served_without_a_cdn(client):
    """/docs and /redoc load their scripts from this server (fastapi-offline's copies), so they work offline."""
    import re

    for page, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        r = client.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        urls = re.findall(r'(?:src|href)="([^"]+)"', r.text) + re.findall(r"url: '([^']+)'", r.text)
        assert any(u.endswith(script) for u in urls), urls
        assert not [u for u in urls if "//" in u], urls  # nothing from another host
        for u in urls:
            asset = client.get(u)
            assert asset.status_code == 200 and asset.content, u
    for page in ("/", "/docs", "/redoc"):  # the browser may load nothing from elsewhere (ReDoc's CDN logo included)
        assert "default-src 'self'" in client.get(page).headers["content-security-policy"]
    assert "content-security-policy" not in client.get("/api/collections").headers
    assert "googleapis" not in client.get("/redoc").text
    assert '"validatorUrl": null' in client.get("/docs").text  # Swagger UI's badge would call validator.swagger.io
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_metrics_exposition(client, queries):
    upload(client, queries["noise"], k=2)
    client.post("/api/collections/demo/search", json={"id": 1})
    text = client.get("/metrics").text
    assert 'audiosim_http_requests_total{method="POST",route="/api/collections/{name}/search",status="200"}' in text
    assert 'audiosim_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/api/collections/{name}/search"}' in text
    assert 'audiosim_search_stage_seconds_count{stage="embed"}' in text
    assert 'audiosim_collection_items{collection="demo"} 20.0' in text
    assert "audiosim_inference_queue_depth 0.0" in text and "audiosim_inference_capacity" in text


def test_urls_carry_the_proxy_prefix(coll_dir):
    """Behind a reverse proxy at /audiosim (uvicorn --root-path), every URL the API hands out starts with it."""
    app = create_app(ServeConfig(collections=(("demo", coll_dir),), warm=False))
    with TestClient(app, root_path="/audiosim") as c:
        hit = c.post("/api/collections/demo/search", json={"id": 0, "k": 1}).json()["hits"][0]
        assert hit["audio_url"] == "/audiosim/api/collections/demo/items/0/audio"
        assert hit["spectrogram_url"].startswith("/audiosim/api/") and hit["item_url"].startswith("/audiosim/api/")
        assert c.get("/api/collections").json()["collections"][0]["url"] == "/audiosim/api/collections/demo"


def test_openapi_json_is_strict_json(client):
    json.loads(client.get("/openapi.json").text)


def test_segment_collections_answer_regions_and_tag_collections_tags(tmp_path, yamnet_tflite):
    """A segment collection's hits come back as regions (start, end, segments); a YAMNet one's carry tags."""
    import numpy as np
    import soundfile as sf
    from fastapi.testclient import TestClient

    import audiosim
    from audiosim.engine.audio import synth
    from audiosim.service.app import create_app
    from audiosim.service.config import ServeConfig

    folder = tmp_path / "rec"
    folder.mkdir()
    rng = np.random.default_rng(5)
    x = 0.05 * synth.noise(duration_s=30.0, color="pink", rng=rng)
    x[16000 * 10:16000 * 14] += 0.8 * synth.chirp(f0=300, f1=4000, duration_s=4.0, rng=rng)
    sf.write(folder / "field.wav", x.astype(np.float32), 16000)
    coll = tmp_path / "coll"
    audiosim.index_folder(folder, coll, embedder="yamnet", weights=yamnet_tflite, segment_s=2.0, segment_hop_s=1.0)
    app = create_app(ServeConfig(collections=(("rec", coll),), warm=False))
    with TestClient(app) as client:
        sid = next(h.id for h in audiosim.open_collection(coll).searcher(weights=yamnet_tflite).search(
            waveform=x[16000 * 10:16000 * 14], sample_rate=16000, k=1, group="none"))
        best = valid_search(client.post("/api/collections/rec/search", json={"id": sid, "k": 2}))["hits"][0]
        assert best["end_s"] is not None and best["segments"] >= 2 and best["offset_s"] <= 11.0 and best["end_s"] >= 13.0
        assert best["tags"] and {"name", "score"} <= set(best["tags"][0]) and isinstance(best["shared_tags"], list)
        flat = valid_search(client.post("/api/collections/rec/search", json={"id": sid, "k": 3, "group": "none"}))["hits"]
        assert len(flat) == 3 and all(h["end_s"] is None for h in flat)
        tagged = client.post("/api/collections/rec/search", json={"id": sid, "k": 5, "group": "none",
                                                                   "tag": best["tags"][0]["name"]}).json()["hits"]
        assert tagged and all(best["tags"][0]["name"] in {t["name"] for t in h["tags"]} for h in tagged)
        bad = client.post("/api/collections/rec/search", json={"id": sid, "tag": "Sine wav"})
        assert bad.status_code == 400 and "Sine wave" in bad.json()["error"]["message"]


def test_tags_over_http(tmp_path, yamnet_tflite, client):
    """Tag-only search ({"tag": "Dog"} works), the tag list the page suggests from, and errors for any client."""
    import soundfile as sf

    from audiosim.engine.audio import synth

    folder = tmp_path / "rec"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for n, kind in enumerate(("chirp", "noise", "tone")):  # synthetic clips
        wave = {"chirp": lambda: synth.chirp(f0=300, f1=4000, duration_s=2.0, rng=rng),
                "noise": lambda: 0.3 * synth.noise(duration_s=2.0, color="white", rng=rng),
                "tone": lambda: 0.5 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)}[kind]()
        sf.write(folder / f"{kind}{n}.wav", np.asarray(wave, np.float32), 16000)
    coll = tmp_path / "coll"
    audiosim.index_folder(folder, coll, embedder="yamnet", weights=yamnet_tflite)
    with TestClient(create_app(ServeConfig(collections=(("tagged", coll),), warm=False))) as c:
        listing = c.get("/api/collections/tagged/tags")
        assert listing.status_code == 200
        body = listing.json()
        assert body["tagged"] is True and len(body["classes"]) == 521 and "Dog" in body["classes"]
        counts = [t["count"] for t in body["tags"]]
        assert body["tags"] and counts == sorted(counts, reverse=True) and all(n >= 1 for n in counts)
        top = body["tags"][0]["name"]

        ranked = valid_search(c.post("/api/collections/tagged/search", json={"tag": top.upper(), "k": 3}))
        assert ranked["query"] == {"kind": "tag", "id": None, "ids": None, "file_name": None, "start_s": None,
                                   "end_s": None, "tag": top.upper(), "text": None}
        hits = ranked["hits"]
        assert hits and all(top in {t["name"] for t in h["tags"]} for h in hits)
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        assert hits[0]["score"] == pytest.approx(next(t["score"] for t in hits[0]["tags"] if t["name"] == top))
        dog = c.post("/api/collections/tagged/search", json={"tag": "Dog"})
        assert dog.status_code == 200 and dog.json()["query"]["kind"] == "tag"

        bad = c.post("/api/collections/tagged/search", json={"tag": "Sine wav"})
        assert_error(bad, 400, "unknown_tag")
        err = bad.json()["error"]
        assert "Sine wave" in err["suggestions"] and "Sine wave" in err["message"]
        assert "/api/collections/tagged/tags" in err["message"] and "`audiosim" not in err["message"]
        assert_error(c.post("/api/collections/tagged/search", json={"k": 3}), 400)
        assert "a tag alone" in c.post("/api/collections/tagged/search", json={"k": 3}).json()["error"]["message"]

    untagged = client.post("/api/collections/demo/search", json={"tag": "Dog"})
    assert_error(untagged, 400, "bad_request")
    assert "stores no classifier tags" in untagged.json()["error"]["message"]
    assert "`audiosim" not in untagged.json()["error"]["message"]
    assert client.get("/api/collections/demo/tags").json() == {"collection": "demo", "tagged": False, "min_score": 0.2,
                                                               "tags": [], "classes": []}


# ---------------------------------------------------------------- issue 18: hostile numbers and bodies
@pytest.mark.parametrize("body", [
    b'{"id": 1, "max_duration_s": Infinity}',
    b'{"id": 1, "min_duration_s": NaN}',
    b'{"vector": [NaN, 1.0]}',
    b'{"id": 9223372036854775808}',
    b'{"ids": [1, 18446744073709551616]}',
    b'{"id": -1}',
])
def test_search_refuses_nan_inf_and_ids_beyond_int64(client, body):
    r = client.post("/api/collections/demo/search", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["message"]


@pytest.mark.parametrize("fields", [{"start_s": "nan"}, {"end_s": "inf"}, {"start_s": "1", "end_s": "nan"},
                                    {"max_duration_s": "inf"}])
def test_upload_search_refuses_nan_and_inf_times(client, queries, fields):
    r = upload(client, queries["tone"], **fields)
    assert r.status_code in (400, 422), r.text


@pytest.mark.parametrize("item", ["9223372036854775808", "18446744073709551616", "-1"])
def test_item_ids_beyond_int64_are_a_clear_4xx(client, item):
    for url in (f"/api/collections/demo/items/{item}", f"/api/collections/demo/items/{item}/audio"):
        r = client.get(url)
        assert 400 <= r.status_code < 500 and r.json()["error"]["message"], r.text


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_a_deeply_nested_json_body_is_a_clear_4xx_not_a_500(client, depth):
    """Issue 18: a body nested 1,000 deep raised RecursionError: 500."""
    body = b'{"id": 1, "label": ' + b"[" * depth + b"]" * depth + b"}"
    r = client.post("/api/collections/demo/search", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert "nested" in r.json()["error"]["message"]
