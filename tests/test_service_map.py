"""``GET /api/collections/NAME/map`` (issue 23, item 4, served): the collection's 2-D map as JSON for the page's Map view.

Proves, on a weight-free logmel collection of synthetic sounds: the answer is exactly what the OpenAPI
schema says; one point per item, with its relative path, label, cluster, colour (the library's legend)
and an audio URL that plays; the points, clusters and names are the library's
(:func:`audiosim.engine.search.atlas.collection_map`); ``clusters=K`` gives K clusters; the map is
computed once per revision (a second ask reuses it, a delete makes a new one); above the server's cap
the map is of a random sample and says so; an empty collection is an empty map; an unknown collection
is a 404 naming the ones served; a bad ``clusters`` is a 422.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'audiosim[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

import audiosim  # noqa: E402
from audiosim.engine.search.atlas import collection_map  # noqa: E402
from audiosim.service import ServeConfig, create_app  # noqa: E402
from audiosim.service.catalog import Catalog, ServedCollection  # noqa: E402
from audiosim.service.schemas import MapResponse  # noqa: E402


@pytest.fixture(scope="module")
def coll_dir(tmp_path_factory):
    from audiosim.engine.audio.synth import write_demo_folder

    demo = tmp_path_factory.mktemp("map_demo")
    write_demo_folder(demo, per_kind=4, seed=7)  # synthetic: 5 kinds x 4, labelled by folder
    root = tmp_path_factory.mktemp("map_coll") / "demo"
    audiosim.index_folder(demo, root, embedder="logmel")
    return root


@pytest.fixture(scope="module")
def client(coll_dir):
    with TestClient(create_app(ServeConfig(collections=(("demo", coll_dir),), warm=False))) as c:
        yield c


def valid_map(r) -> dict:
    assert r.status_code == 200, r.text
    body = r.json()
    assert MapResponse.model_validate(body).model_dump(mode="json") == body  # built without pydantic: check the contract
    return body


def assert_error(r, status, code, *words):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["status"] == status and error["code"] == code
    assert all(w in error["message"] for w in words), error["message"]


def test_one_point_per_item_with_the_librarys_projection_and_legend(client, coll_dir):
    body = valid_map(client.get("/api/collections/demo/map"))
    c = audiosim.open_collection(coll_dir)
    lib = collection_map(c)
    points = body["points"]
    assert body["collection"] == "demo" and body["revision"] == c.revision
    assert body["total"] == body["shown"] == len(points) == len(c) == 20 and body["sampled"] is False
    assert sorted(p["id"] for p in points) == sorted(int(i) for i in c.items().ids)
    assert [p["id"] for p in points] == lib.ids.tolist()
    np.testing.assert_allclose([[p["x"], p["y"]] for p in points], lib.xy, rtol=1e-6)
    assert [p["cluster"] for p in points] == lib.cluster.tolist()
    assert [cl["name"] for cl in body["clusters"]] == list(lib.cluster_names) and body["method"] == lib.method
    assert sum(cl["size"] for cl in body["clusters"]) == 20
    entries, colour_of = lib.legend()
    assert body["coloured_by"] == "label" == lib.coloured_by  # the demo folder is labelled by kind
    assert [e["name"] for e in body["legend"]] == ["chirp", "clicks", "hum", "noise", "tone"]
    assert [e["colour"] for e in body["legend"]] == [e.colour for e in entries]
    assert [p["colour"] for p in points] == colour_of.tolist()
    for p in points:
        assert body["legend"][p["colour"]]["name"] == p["label"]
        assert p["path"] == f"{p['label']}/{p['file_name']}"  # relative to the indexed folder, never the server's path
        assert p["audio_url"] == f"/api/collections/demo/items/{p['id']}/audio"
    audio = client.get(points[0]["audio_url"])
    assert audio.status_code == 200 and len(audio.content) > 1000


def test_clusters_are_asked_and_checked(client):
    body = valid_map(client.get("/api/collections/demo/map", params={"clusters": 3}))
    assert len(body["clusters"]) == 3 and {p["cluster"] for p in body["points"]} == {0, 1, 2}
    for bad in ("0", "51", "x", "2.5"):
        assert_error(client.get("/api/collections/demo/map", params={"clusters": bad}), 422, "invalid_request", "clusters")


def test_an_unknown_collection_is_a_404_naming_the_served_ones(client):
    assert_error(client.get("/api/collections/nope/map"), 404, "not_found", "no collection named 'nope'", "demo")


def test_computed_once_per_revision_sampled_above_the_cap_and_empty_when_emptied(coll_dir, tmp_path, monkeypatch):
    import audiosim.service.catalog as catalog

    root = tmp_path / "copy"
    shutil.copytree(coll_dir, root)
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return collection_map(*args, **kwargs)

    monkeypatch.setattr(catalog, "collection_map", counting)
    served = Catalog({"c": ServedCollection("c", root, warm=False, map_max_points=8)})
    with TestClient(create_app(ServeConfig(collections=(("c", root),), warm=False), catalog=served)) as c:
        first = valid_map(c.get("/api/collections/c/map"))
        assert first["sampled"] is True and first["total"] == 20 and first["shown"] == len(first["points"]) == 8
        assert first["max_points"] == 8 and calls[-1]["max_points"] == 8
        ids = [p["id"] for p in first["points"]]
        assert len(set(ids)) == 8 and set(ids) <= {int(i) for i in audiosim.open_collection(root).items().ids}
        assert valid_map(c.get("/api/collections/c/map")) == first and len(calls) == 1  # the same revision: reused
        valid_map(c.get("/api/collections/c/map", params={"clusters": 2}))
        assert len(calls) == 2  # another clusters choice is another map

        coll = audiosim.open_collection(root)
        coll.delete(ids=[ids[0]])  # a new revision: a new map, without the deleted item
        second = valid_map(c.get("/api/collections/c/map"))
        assert len(calls) == 3 and second["revision"] == first["revision"] + 1 and second["total"] == 19
        assert ids[0] not in {p["id"] for p in second["points"]}

        coll.delete(ids=[int(i) for i in coll.items().ids])
        empty = valid_map(c.get("/api/collections/c/map"))
        assert empty["total"] == empty["shown"] == 0 and empty["points"] == [] and empty["clusters"] == []
