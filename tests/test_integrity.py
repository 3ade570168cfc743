"""``check`` and ``repair`` as library functions: what they read, write, lock and report.

Proves: ``check`` writes nothing (not even a lock file) and runs while a writer holds the lock;
it restarts on a new snapshot when a writer commits during the check; leftovers of an
interrupted writer and a stale index are warnings, not errors. ``repair`` holds the writer lock,
refuses a folder that is not a collection without creating anything in it, never touches audio
files or unrelated files, is a no-op on a sound collection, lists lost files exactly when the
damaged part's ``path`` column still reads and from the source folders otherwise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from store_helpers import tree

from audiosim.engine.store.integrity import check_collection, repair_collection
from audiosim.engine.store.lock import WriterLock
from audiosim.engine.store.store import CollectionStore, read_manifest
from audiosim.errors import CollectionError, CollectionLockedError


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    from audiosim.engine.ingest.indexer import index_folder
    from audiosim.engine.audio.synth import write_demo_folder

    base = tmp_path_factory.mktemp("integrity")
    audio = base / "audio"
    write_demo_folder(audio, per_kind=2, seed=5)
    coll = base / "coll"
    index_folder(audio, coll, embedder="logmel", flush_every=3)
    return audio, coll


@pytest.fixture
def coll(indexed, tmp_path):
    dst = tmp_path / "coll"
    shutil.copytree(indexed[1], dst)
    return dst


def _audio_digest(folder: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_check_of_a_sound_collection(coll):
    r = check_collection(coll)
    m = read_manifest(coll)
    assert r.ok and not r.problems and r.revision == m.revision and r.vectors == 10 and r.parts == len(m.parts)
    assert r.index == m.index.dir
    assert r.to_dict()["ok"] is True and r.to_dict()["problems"] == []


def test_check_writes_nothing_and_takes_no_lock(coll):
    (coll / ".lock").unlink()
    before = tree(coll)
    with WriterLock(coll, wait=0):  # a writer holds the lock: check reads its snapshot anyway
        assert check_collection(coll).ok
    (coll / ".lock").unlink()
    assert tree(coll) == before
    (coll / "parts" / read_manifest(coll).parts[0].name.split("/")[1]).write_bytes(b"garbage")
    before = tree(coll)
    assert not check_collection(coll).ok
    assert tree(coll) == before


def test_check_restarts_when_a_writer_commits_during_it(coll, monkeypatch):
    import audiosim.engine.store.integrity as integrity

    real, calls = integrity._check, []

    def check_once(root):
        calls.append(1)
        report = real(root)
        if len(calls) == 1:  # another process commits while this check runs
            c = CollectionStore.open(root)
            with c.writer() as w:
                ids = c.embeddings()[0]
                w.delete(ids[:1])
        return report

    monkeypatch.setattr(integrity, "_check", check_once)
    r = integrity.check_collection(coll)
    assert len(calls) == 2 and r.revision == read_manifest(coll).revision and r.vectors == 9


def test_leftovers_and_stale_index_are_warnings(coll):
    c = CollectionStore.open(coll)
    with c.writer() as w:  # a data commit without an index rebuild (as a killed `index` leaves it)
        w.delete(c.embeddings()[0][:2])
    (coll / ".collection.json.0123abcd.tmp").write_text("{")  # and what a killed writer leaves
    (coll / "parts" / ".part-00000099-abc.parquet.tmp").write_bytes(b"half")
    r = check_collection(coll)
    assert r.ok and len(r.warnings) == 3, [p.to_dict() for p in r.problems]
    assert {Path(p.file).name for p in r.warnings} >= {".collection.json.0123abcd.tmp", ".part-00000099-abc.parquet.tmp"}
    assert any("built for revision" in p.problem for p in r.warnings)
    rep = repair_collection(coll)
    assert rep.index_rebuilt and len(rep.removed_files) == 2 and not rep.dropped_parts and not rep.lost_files
    after = check_collection(coll)
    assert after.ok and not after.warnings


def test_repair_of_a_sound_collection_changes_nothing(coll):
    before = tree(coll)
    rep = repair_collection(coll)
    assert not rep.repaired and rep.ok and not rep.lost_files and not rep.dropped_parts
    after = tree(coll)
    assert after.pop(".lock")[0] == 0  # the lock was taken and released (its stamp changed)
    before.pop(".lock")
    assert after == before


def test_repair_takes_the_writer_lock(coll):
    with WriterLock(coll, wait=0, purpose="test"):
        with pytest.raises(CollectionLockedError, match=r"PID \d+"):
            repair_collection(coll, wait=0)


def test_repair_refuses_a_folder_that_is_not_a_collection(indexed, tmp_path):
    audio = tmp_path / "audio"
    shutil.copytree(indexed[0], audio)
    before = tree(audio)
    with pytest.raises(CollectionError, match="not a collection"):
        repair_collection(audio)
    with pytest.raises(CollectionError, match="not a collection"):
        check_collection(audio)
    assert tree(audio) == before  # no .lock, nothing created
    with pytest.raises(CollectionError, match="not a folder"):
        repair_collection(audio / "nope")


def test_repair_never_touches_audio_or_unrelated_files(indexed, coll):
    audio = indexed[0]
    digest = _audio_digest(audio)
    (coll / "notes.txt").write_text("mine")
    (coll / "parts" / "README").write_text("mine too")
    (coll / ".backup.tmp").write_text("not audiosim's")
    m = read_manifest(coll)
    (coll / m.parts[0].name).unlink()
    (coll / "collection.json").write_text("{}")
    rep = repair_collection(coll)
    assert rep.manifest_rebuilt and rep.ok
    assert _audio_digest(audio) == digest
    assert (coll / "notes.txt").read_text() == "mine" and (coll / "parts" / "README").exists()
    assert (coll / ".backup.tmp").exists()


def test_lost_files_exact_from_the_path_column(coll):
    """Only the embedding pages garbled: the part's path column still reads, so the list is exact."""
    import pyarrow.parquet as pq

    m = read_manifest(coll)
    part = coll / m.parts[1].name
    paths = set(pq.read_table(part, columns=["path"])["path"].to_pylist())
    md = pq.ParquetFile(part).metadata
    emb = next(md.row_group(0).column(i) for i in range(md.num_columns)
               if md.row_group(0).column(i).path_in_schema.startswith("embedding"))
    start = emb.dictionary_page_offset if emb.has_dictionary_page else emb.data_page_offset
    b = bytearray(part.read_bytes())
    b[start + emb.total_compressed_size - 8] ^= 0xFF  # inside the embedding column chunk's data
    part.write_bytes(bytes(b))
    rep = repair_collection(coll)
    assert rep.lost_files_exact and set(rep.lost_files) == paths and rep.lost_vectors == len(paths)


def test_lost_files_from_the_source_folders(indexed, coll):
    """The part is gone: the files come from comparing the source folders with what is still stored."""
    m = read_manifest(coll)
    c = CollectionStore.open(coll)
    paths = set(c._read_part(m.parts[0], ["id", "path"])["path"].to_pylist())
    (coll / m.parts[0].name).unlink()
    (coll / "errors.jsonl").write_text(json.dumps({"path": sorted(paths)[0], "error": "X", "message": "m"}) + "\n")
    rep = repair_collection(coll)
    assert not rep.lost_files_exact
    assert set(rep.lost_files) == paths - {sorted(paths)[0]}  # a file that failed to index is not "lost"


def test_rebuild_refuses_when_nothing_records_the_settings(coll):
    import pyarrow.parquet as pq

    for f in (coll / "parts").glob("*.parquet"):  # parts without the audiosim schema metadata
        t = pq.read_table(f)
        pq.write_table(t.replace_schema_metadata(None), f)
    (coll / "collection.json").write_text("[]")
    with pytest.raises(CollectionError, match="cannot be rebuilt"):
        repair_collection(coll)


def test_parts_repeat_the_settings_a_rebuild_needs(coll):
    from audiosim.engine.store.store import part_metadata

    m = read_manifest(coll)
    meta = part_metadata(coll / m.parts[-1].name)
    assert meta["embedder"] == m.embedder.to_dict() and meta["pooling"] == m.pooling.to_dict()
    for key in ("metric", "dim", "segment_s", "segment_hop_s", "embedder_options", "sources", "index_kind", "created"):
        assert meta[key] == m.to_dict()[key], key


def test_index_with_other_vectors_is_found(coll):
    """An index whose files match their sidecar but hold other vectors (rebuilt from other data): check sees it."""
    from audiosim.indexes.kinds import load_index

    m = read_manifest(coll)
    d = coll / m.index.dir
    index, sidecar = load_index(d)
    ids = index.ids()
    other = np.random.default_rng(0).standard_normal((ids.size, index.dim)).astype(np.float32)
    from audiosim.indexes.kinds import make_index

    fake = make_index("flat", dim=index.dim, metric=index.metric)
    fake.add(ids, other)
    fake.save(d, extra={"collection_revision": sidecar["collection_revision"], "postprocess": sidecar["postprocess"]})
    r = check_collection(coll)
    assert not r.ok and any("differ from the stored ones" in p.problem for p in r.errors)
    assert repair_collection(coll).after.ok
