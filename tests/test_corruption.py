"""Damage of every kind to a collection's files: ``check`` reports it, ``repair`` restores a sound collection.

Each case copies a sound collection (20 synthetic clips, logmel, 5 parts), damages it, and
proves the whole cycle:

1. ``check`` finds an error naming the damaged file (and the read path raises a typed error,
   never a traceback or silently wrong numbers);
2. ``repair`` leaves a collection ``check`` accepts, whose stored files and the files it lists
   as lost are disjoint and together all 20 (nothing lost beyond the named files);
3. ``audiosim index`` of the source folder re-embeds exactly the lost files, after which every
   file is stored once with the vector of a clean run and ``check`` passes.

Damage: truncated, emptied, garbled (random bytes at several offsets), missing, swapped and
foreign parts; a part listed twice, duplicated ids across parts, a well-formed part with NaN
embeddings; garbled, missing and inconsistent ``faiss.index`` / ``index.json`` / post-processing;
manifests of random bytes, ``{"format": 1}``, ``{"format": 2}``, a JSON list, wrong types, a
lowered ``next_id``, a part listed twice, a part name with ``..``, a missing, empty or truncated
``collection.json``, NaN and absurd numbers. Also: every random garble of a part either fails
with a typed error or reads back the exact original data.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from store_helpers import assert_same_vectors, check_json, cli, vectors_by_path

from audiosim.engine.store.integrity import check_collection, repair_collection
from audiosim.engine.store.manifest import ManifestError
from audiosim.engine.store.store import CollectionStore, read_manifest
from audiosim.errors import AudiosimError, CollectionError, CorruptCollectionError


@pytest.fixture(scope="module")
def sound(tmp_path_factory):
    """(audio folder, a sound collection of it in 5 parts, {path: vector}, {part name: paths it holds})."""
    from audiosim.engine.ingest.indexer import index_folder
    from audiosim.engine.audio.synth import write_demo_folder

    base = tmp_path_factory.mktemp("corruption")
    audio = base / "audio"
    write_demo_folder(audio, per_kind=4, seed=7)
    coll = base / "sound"
    index_folder(audio, coll, embedder="logmel", flush_every=4)
    m = read_manifest(coll)
    assert len(m.parts) == 5 and m.count == 20 and m.index_fresh
    c = CollectionStore.open(coll)
    holds = {p.name: set(c._read_part(p, ["id", "path"])["path"].to_pylist()) for p in m.parts}
    return audio, coll, vectors_by_path(coll), holds


def _copy(sound, tmp_path) -> tuple[Path, dict]:
    _, coll, _, _ = sound
    dst = tmp_path / "coll"
    shutil.copytree(coll, dst)
    return dst, json.loads((dst / "collection.json").read_text())


def _garble(path: Path, seed: int, n: int = 4) -> None:
    b = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for o in rng.integers(0, len(b), size=n):
        b[o] = (b[o] + int(rng.integers(1, 256))) % 256
    path.write_bytes(bytes(b))


def _index_dir(coll: Path) -> Path:
    return coll / json.loads((coll / "collection.json").read_text())["index"]["dir"]


def full_cycle(sound, coll: Path, *, lost_expected: set | None = None, damaged_file: str | None = None) -> dict:
    """check -> repair -> check -> index -> same vectors; returns the repair report as a dict."""
    from audiosim.engine.ingest.indexer import index_folder

    audio, _, reference, _ = sound
    first = check_json(coll)
    assert not first["ok"], "check missed the damage"
    if damaged_file is not None:
        assert any(damaged_file in p["file"] for p in first["problems"] if p["severity"] == "error"), first["problems"]
    assert all(p["fix"] for p in first["problems"])
    report = repair_collection(coll)
    assert report.ok and report.after.ok, [p.to_dict() for p in report.after.problems]
    stored = set(CollectionStore.open(coll).files())
    assert not stored & set(report.lost_files)
    assert stored | set(report.lost_files) == set(reference), "vectors lost without being named"
    if lost_expected is not None:
        assert set(report.lost_files) == lost_expected
    assert check_json(coll)["ok"]
    again = index_folder(audio, coll, embedder="logmel")
    assert again.new == len(report.lost_files) and again.embedded == len(report.lost_files) and not again.failures
    assert_same_vectors(coll, reference)
    final = check_collection(coll)
    assert final.ok and not final.warnings, [p.to_dict() for p in final.problems]
    return report.to_dict()


def _reads_fail_typed(coll: Path, truth) -> None:
    """A read of the damaged collection is a typed error, or the exact data."""
    try:
        c = CollectionStore.open(coll)
        t = c.read_table()
        c.embeddings()
    except AudiosimError:
        return
    assert t.equals(truth), "damaged data read back without an error"


# ---------------------------------------------------------------------- parts
PART_DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "emptied": lambda p: p.write_bytes(b""),
    "garbled-body": lambda p: _garble(p, seed=1),
    "garbled-head": lambda p: p.write_bytes(p.read_bytes()[:4] + os.urandom(64) + p.read_bytes()[68:]),
    "garbled-footer": lambda p: p.write_bytes(p.read_bytes()[:-80] + os.urandom(72) + p.read_bytes()[-8:]),
    "missing": lambda p: p.unlink(),
    "replaced-by-a-directory": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("damage", sorted(PART_DAMAGE))
def test_damaged_part(sound, tmp_path, damage):
    coll, m = _copy(sound, tmp_path)
    part = m["parts"][2]["name"]
    PART_DAMAGE[damage](coll / part)
    with pytest.raises(CollectionError):
        CollectionStore.open(coll).embeddings()
    report = full_cycle(sound, coll, lost_expected=sound[3][part], damaged_file=part)
    assert [d["part"] for d in report["dropped_parts"]] == [part] and report["lost_vectors"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 12))
def test_garbled_part_at_random_offsets(sound, tmp_path, seed):
    coll, m = _copy(sound, tmp_path)
    truth = CollectionStore.open(coll).read_table()
    part = m["parts"][seed % 5]["name"]
    _garble(coll / part, seed=seed, n=1 + seed % 5)
    _reads_fail_typed(coll, truth)
    full_cycle(sound, coll, lost_expected=sound[3][part], damaged_file=part)


def test_swapped_parts_are_restored_by_content(sound, tmp_path):
    coll, m = _copy(sound, tmp_path)
    a, b = coll / m["parts"][0]["name"], coll / m["parts"][3]["name"]
    x = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(x)
    with pytest.raises(CorruptCollectionError):
        CollectionStore.open(coll).embeddings()
    report = full_cycle(sound, coll, lost_expected=set())
    assert len(report["restored_parts"]) == 2 and not report["dropped_parts"]


def test_foreign_part_in_place_of_one(sound, tmp_path):
    """A part of another collection under a live part's name: dropped, and its own files listed as lost."""
    from audiosim.engine.ingest.indexer import index_folder
    from audiosim.engine.audio.synth import write_demo_folder

    coll, m = _copy(sound, tmp_path)
    write_demo_folder(tmp_path / "other", per_kind=1, seed=3)
    index_folder(tmp_path / "other", tmp_path / "othercoll", embedder="logmel")
    foreign = next((tmp_path / "othercoll" / "parts").glob("*.parquet"))
    part = m["parts"][1]["name"]
    shutil.copy(foreign, coll / part)
    full_cycle(sound, coll, lost_expected=sound[3][part], damaged_file=part)


def test_part_with_nan_embeddings_and_valid_checksums(sound, tmp_path):
    """A well-formed part whose sha256 matches its record but holds NaN vectors (a buggy writer) is dropped."""
    import pyarrow.parquet as pq

    from audiosim.files import sha256_file

    coll, m = _copy(sound, tmp_path)
    rec = m["parts"][4]
    path = coll / rec["name"]
    t = pq.read_table(path)
    emb = t["embedding"].combine_chunks()
    vals = emb.values.to_numpy(zero_copy_only=False).copy()
    vals[3] = np.nan
    import pyarrow as pa

    t = t.set_column(t.schema.get_field_index("embedding"), t.schema.field("embedding"),
                     pa.FixedSizeListArray.from_arrays(pa.array(vals, pa.float32()), emb.type.list_size))
    pq.write_table(t, path, write_page_checksum=True)
    rec.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    (coll / "collection.json").write_text(json.dumps(m))
    with pytest.raises(CorruptCollectionError, match="non-finite"):
        CollectionStore.open(coll).embeddings()
    report = full_cycle(sound, coll, lost_expected=sound[3][rec["name"]], damaged_file=rec["name"])
    assert report["lost_files_exact"]  # the path column still reads: the exact list


def test_ids_repeated_across_parts(sound, tmp_path):
    """A copy of a live part listed as another part (consistent counts and checksums): the repeat is dropped."""
    coll, m = _copy(sound, tmp_path)
    rec = dict(m["parts"][0])
    copy = rec["name"].replace("part-", "part-99999999-copy")
    shutil.copy(coll / rec["name"], coll / copy)
    m["parts"].append({**rec, "name": copy})
    m["count"] += rec["rows"]
    (coll / "collection.json").write_text(json.dumps(m))
    assert "more than one part" in json.dumps(check_json(coll)["problems"])
    report = full_cycle(sound, coll, lost_expected=set())
    assert [d["part"] for d in report["dropped_parts"]] == [copy]


# ---------------------------------------------------------------------- the saved index
def _pp_collection(sound, tmp_path) -> Path:
    from audiosim.engine.ingest.indexer import index_folder

    coll, _ = _copy(sound, tmp_path)
    index_folder(sound[0], coll, embedder="logmel", postprocess="center")
    assert (_index_dir(coll) / "postprocess.npz").is_file()
    return coll


INDEX_DAMAGE = {
    "faiss-garbled": lambda d: _garble(d / "faiss.index", seed=5),
    "faiss-truncated": lambda d: (d / "faiss.index").write_bytes((d / "faiss.index").read_bytes()[:100]),
    "faiss-missing": lambda d: (d / "faiss.index").unlink(),
    "sidecar-random-bytes": lambda d: (d / "index.json").write_bytes(os.urandom(200)),
    "sidecar-list": lambda d: (d / "index.json").write_text("[]"),
    "sidecar-wrong-count": lambda d: (d / "index.json").write_text(
        json.dumps({**json.loads((d / "index.json").read_text()), "count": 7})),
    "sidecar-wrong-sha": lambda d: (d / "index.json").write_text(
        json.dumps({**json.loads((d / "index.json").read_text()), "file_sha256": "0" * 64,
                    "files": {"faiss.index": {"bytes": (d / "faiss.index").stat().st_size, "sha256": "0" * 64}}})),
    "folder-missing": lambda d: shutil.rmtree(d),
    # issue 18: a sidecar field of the wrong type crashed check, query and repair (AttributeError in verify_files)
    "sidecar-files-a-number": lambda d: _edit_sidecar(d, files=7),
    "sidecar-files-a-list": lambda d: _edit_sidecar(d, files=["faiss.index"]),
    "sidecar-file-entry-a-string": lambda d: _edit_sidecar(d, files={"faiss.index": "big"}),
    "sidecar-file-bytes-a-string": lambda d: _edit_sidecar(d, files={"faiss.index": {"bytes": "7", "sha256": "0"}}),
    "sidecar-file-name-escapes": lambda d: _edit_sidecar(d, files={"../../collection.json": {"bytes": 1}}),
    "sidecar-build-a-number": lambda d: _edit_sidecar(d, build=7),
    "sidecar-params-a-list": lambda d: _edit_sidecar(d, params=[1]),
    "sidecar-dim-a-string": lambda d: _edit_sidecar(d, dim="168"),
    "sidecar-postprocess-files-a-number": lambda d: _edit_sidecar(d, postprocess_files=7),
}


def _edit_sidecar(d: Path, **fields) -> None:
    (d / "index.json").write_text(json.dumps({**json.loads((d / "index.json").read_text()), **fields}))


@pytest.mark.parametrize("damage", sorted(INDEX_DAMAGE))
def test_damaged_index(sound, tmp_path, damage):
    from audiosim.engine.search.searcher import Searcher

    coll, _ = _copy(sound, tmp_path)
    q = np.linspace(-1, 1, CollectionStore.open(coll).dim).astype(np.float32)
    truth = [(h.id, round(h.score, 4)) for h in Searcher(coll).search(vector=q, k=5)]
    d = _index_dir(coll)
    INDEX_DAMAGE[damage](d)
    try:  # a search fails with a typed error, or gives the true results (never nonsense scores)
        assert [(h.id, round(h.score, 4)) for h in Searcher(coll).search(vector=q, k=5)] == truth
    except AudiosimError:
        pass
    report = full_cycle(sound, coll, lost_expected=set(), damaged_file=str(d.relative_to(coll)))
    assert report["index_rebuilt"] and not report["dropped_parts"]


PP_DAMAGE = {
    "npz-garbled": lambda d: _garble(d / "postprocess.npz", seed=9, n=8),
    "npz-missing": lambda d: (d / "postprocess.npz").unlink(),
    "json-garbled": lambda d: (d / "postprocess.json").write_bytes(os.urandom(50)),
    "json-other-spec": lambda d: (d / "postprocess.json").write_text(
        json.dumps({**json.loads((d / "postprocess.json").read_text()), "spec": "l2"})),
}


@pytest.mark.parametrize("damage", sorted(PP_DAMAGE))
def test_damaged_postprocessing(sound, tmp_path, damage):
    coll = _pp_collection(sound, tmp_path)
    d = _index_dir(coll)
    PP_DAMAGE[damage](d)
    report = full_cycle(sound, coll, lost_expected=set(), damaged_file=str(d.relative_to(coll)))
    assert report["index_rebuilt"]


@pytest.mark.parametrize("damage", [
    "npz-garbled",
    "npz-missing",
    "json-garbled",
    "json-other-spec",
])
def test_search_on_damaged_postprocessing_fails_typed_or_is_right(sound, tmp_path, damage):
    from audiosim.engine.search.searcher import Searcher

    coll = _pp_collection(sound, tmp_path)
    q = np.linspace(-1, 1, CollectionStore.open(coll).dim).astype(np.float32)
    truth = [(h.id, round(h.score, 4)) for h in Searcher(coll).search(vector=q, k=5)]
    PP_DAMAGE[damage](_index_dir(coll))
    try:
        got = [(h.id, round(h.score, 4)) for h in Searcher(coll).search(vector=q, k=5)]
    except AudiosimError:
        return
    assert got == truth


# ---------------------------------------------------------------------- the manifest
def _first(m: dict) -> dict:
    return m["parts"][0]


def _dumps(d) -> bytes:
    return json.dumps(d).encode()


MANIFESTS = {
    "random-bytes": lambda m: os.urandom(400),
    "empty": lambda m: b"",
    "truncated-json": lambda m: _dumps(m)[:300],
    "format-1-only": lambda m: b'{"format": 1}',
    "format-2-only": lambda m: b'{"format": 2}',
    "format-3": lambda m: _dumps({**m, "format": 3}),
    "format-true": lambda m: _dumps({**m, "format": True}),
    "json-list": lambda m: b"[]",
    "json-string": lambda m: b'"collection"',
    "json-null": lambda m: b"null",
    "deeply-nested": lambda m: b"[" * 100000 + b"]" * 100000,
    "dim-a-string": lambda m: _dumps({**m, "dim": "128"}),
    "count-null": lambda m: _dumps({**m, "count": None}),
    "parts-an-object": lambda m: _dumps({**m, "parts": {"a": 1}}),
    "part-rows-a-float": lambda m: _dumps({**m, "parts": [{**_first(m), "rows": 4.0}] + m["parts"][1:]}),
    "embedder-a-list": lambda m: _dumps({**m, "embedder": [1, 2]}),
    "pooling-unknown": lambda m: _dumps({**m, "pooling": {"name": "median"}}),
    "metric-unknown": lambda m: _dumps({**m, "metric": "manhattan"}),
    "lowered-next-id": lambda m: _dumps({**m, "next_id": 3}),
    "next-id-huge": lambda m: _dumps({**m, "next_id": 10**30}),
    "negative-revision": lambda m: _dumps({**m, "revision": -1}),
    "nan-segment": lambda m: json.dumps({**m, "segment_s": float("nan")}).encode(),
    "part-listed-twice": lambda m: _dumps({**m, "parts": m["parts"] + [_first(m)],
                                           "count": m["count"] + _first(m)["rows"]}),
    "part-name-dotdot": lambda m: _dumps({**m, "parts": [{**_first(m), "name": "parts/../../../etc/passwd"}]
                                          + m["parts"][1:]}),
    "part-name-absolute": lambda m: _dumps({**m, "parts": [{**_first(m), "name": "/tmp/part-1.parquet"}] + m["parts"][1:]}),
    "part-id-range-inverted": lambda m: _dumps({**m, "parts": [{**_first(m), "min_id": 9, "max_id": 2}] + m["parts"][1:]}),
    "count-wrong": lambda m: _dumps({**m, "count": 21}),
    "index-dir-escapes": lambda m: _dumps({**m, "index": {**m["index"], "dir": "../elsewhere"}}),
    "dim-mismatch": lambda m: _dumps({**m, "dim": m["dim"] * 2}),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_bad_manifest(sound, tmp_path, case):
    coll, m = _copy(sound, tmp_path)
    (coll / "collection.json").write_bytes(MANIFESTS[case](m))
    with pytest.raises(ManifestError) as e:
        CollectionStore.open(coll)
    assert str(coll / "collection.json") in str(e.value) and "audiosim repair" in str(e.value)
    report = full_cycle(sound, coll, lost_expected=set(), damaged_file="collection.json")
    assert report["manifest_rebuilt"]


def test_missing_manifest(sound, tmp_path):
    coll, _ = _copy(sound, tmp_path)
    (coll / "collection.json").unlink()
    with pytest.raises(CollectionError):
        CollectionStore.open(coll)
    report = full_cycle(sound, coll, lost_expected=set(), damaged_file="collection.json")
    assert report["manifest_rebuilt"]


def test_rebuilt_manifest_keeps_the_settings_and_skips_replaced_versions(sound, tmp_path):
    """After a relabel and a delete (the index not yet rebuilt, so the replaced parts are still on disk),
    a lost manifest is rebuilt from the newest version of every row: new labels, no resurrected duplicates."""
    coll, _ = _copy(sound, tmp_path)
    c = CollectionStore.open(coll)
    files = c.files()
    victim = sorted(files)[0]
    relabel = sorted(files)[5]
    with c.writer() as w:
        w.set_labels({files[relabel].ids[0]: "renamed"})
        w.delete(files[victim].ids)
    before = read_manifest(coll)
    (coll / "collection.json").write_bytes(os.urandom(64))
    report = repair_collection(coll)
    assert report.manifest_rebuilt and report.after.ok
    after = read_manifest(coll)
    for key in ("embedder", "pooling", "metric", "dim", "segment_s", "embedder_options", "sources", "index_kind"):
        assert getattr(after, key) == getattr(before, key), key
    assert after.next_id >= before.next_id and after.revision > before.revision
    rows = CollectionStore.open(coll).records(["path", "label"])
    labels = {r["path"]: r["label"] for r in rows}
    assert labels[relabel] == "renamed" and len(rows) == len(labels)
    # the deleted file's only copy is in the replaced part: named as lost (the next index re-embeds it)
    assert set(report.lost_files) <= {victim}
    assert set(labels) | set(report.lost_files) == set(sound[2])


# ---------------------------------------------------------------------- the read path never lies
def test_every_random_garble_reads_back_exact_or_fails_typed(sound, tmp_path):
    """200 random garbles of one part: each read either raises a typed error or returns the original data."""
    coll, m = _copy(sound, tmp_path)
    part = coll / m["parts"][1]["name"]
    original = part.read_bytes()
    truth = CollectionStore.open(coll).read_table()
    rng = np.random.default_rng(0)
    outcomes = {"typed error": 0, "exact": 0}
    for _ in range(200):
        b = bytearray(original)
        for o in rng.integers(0, len(b), size=int(rng.integers(1, 6))):
            b[o] = (b[o] + int(rng.integers(1, 256))) % 256
        part.write_bytes(bytes(b))
        c = CollectionStore.open(coll)
        try:
            t = c.read_table()
            c.embeddings()
        except CollectionError:
            outcomes["typed error"] += 1
            continue
        assert t.equals(truth), "a garbled part read back different data without an error"
        outcomes["exact"] += 1
    assert outcomes["typed error"] > 100, outcomes


def test_check_and_repair_cli_exit_codes_and_json(sound, tmp_path):
    from click.testing import CliRunner

    coll, m = _copy(sound, tmp_path)
    runner = CliRunner()
    ok = runner.invoke(cli(), ["check", "--collection", str(coll)])
    assert ok.exit_code == 0 and "ok:" in ok.output
    (coll / m["parts"][0]["name"]).write_bytes(b"x")
    bad = runner.invoke(cli(), ["check", "--collection", str(coll)])
    assert bad.exit_code == 1 and "error:" in bad.output and m["parts"][0]["name"] in bad.output
    assert "fix: run `audiosim repair" in bad.output and "Traceback" not in bad.output
    fixed = runner.invoke(cli(), ["repair", "--collection", str(coll), "--json"])
    doc = json.loads(fixed.output)
    assert fixed.exit_code == 0 and doc["ok"] and doc["repaired"] and doc["lost_vectors"] == 4
    assert sorted(doc["lost_files"]) == sorted(sound[3][m["parts"][0]["name"]])
    text = runner.invoke(cli(), ["repair", "--collection", str(coll)])
    assert text.exit_code == 0 and "nothing to repair" in text.output


# ---------------------------------------------------------------------- the manifest as the odd one out
ODD_MANIFESTS = {  # every part reads back and agrees with the others; the manifest's settings do not
    "embedder-version-wrong": lambda m: {**m, "embedder": {**m["embedder"], "version": "999"}},
    "embedder-name-wrong": lambda m: {**m, "embedder": {**m["embedder"], "name": "vggish"}},
    "pooling-option-wrong": lambda m: {**m, "pooling": {**m["pooling"], "sg_order": 3}},
}


@pytest.mark.parametrize("case", sorted(ODD_MANIFESTS))
def test_repair_keeps_every_part_when_the_manifest_settings_are_the_odd_one_out(sound, tmp_path, case):
    """Issue 18: repair deleted every part ("repaired: 0 vectors") and kept the bad field, so the next index refused.
    Now check blames the manifest, repair rebuilds it from the parts and drops nothing, and the next index works."""
    coll, m = _copy(sound, tmp_path)
    (coll / "collection.json").write_text(json.dumps(ODD_MANIFESTS[case](m)))
    first = check_json(coll)
    assert [p["file"] for p in first["problems"] if p["severity"] == "error"] == [str(coll / "collection.json")]
    report = full_cycle(sound, coll, lost_expected=set(), damaged_file="collection.json")
    assert report["manifest_rebuilt"] and not report["dropped_parts"] and report["lost_vectors"] == 0
    fixed = read_manifest(coll)
    assert fixed.embedder.to_dict() == m["embedder"] and fixed.pooling.to_dict() == m["pooling"]
    assert fixed.count == 20 and {p.name for p in fixed.parts} == {p["name"] for p in m["parts"]}
