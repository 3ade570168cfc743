"""Compaction merges small parts and changes nothing else.

* Every id, vector (bit for bit), path, content hash, label (None included), offset, duration
  and ``tags`` entry is the same after compaction; the revision and the saved index stay (the
  index is still current and searches return the same hits); every part on disk matches the
  size and sha256 the manifest records and reads back with Parquet page checksums verified.
* The plan merges only small parts, in id order, within the target size, two or more at a time.
* ``index_folder`` compacts automatically past the part-count threshold; ``audiosim compact``
  does it on demand and says when there is nothing to do.
* A compaction interrupted before its commit leaves the collection as it was, and its
  half-written part is removed by the next commit.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from audiosim.cli import main
from audiosim.commands.compact import compact_cmd
from audiosim.engine.store.compaction import AUTO_COMPACT_PARTS, compact, compact_collection, plan_compaction
from audiosim.engine.ingest.indexer import index_folder
from audiosim.engine.store.manifest import PartRecord
from audiosim.engine.search.library import Collection
from audiosim.engine.store.store import Rows
from audiosim.files import sha256_file

EMB = {"name": "toy", "version": "1", "sample_rate": 16000, "dim": 8, "window_s": 1.0, "hop_s": 0.5, "weights_sha256": "cd" * 32}
POOL = {"name": "mu", "sg_window": 9, "sg_order": 2, "delta_reduce": "absmean"}


def snapshot(coll: Collection):
    """Every column of every row, ids ascending (vectors as raw bytes: equality is bit-exact)."""
    t = coll.read_table()
    rows = t.drop_columns(["embedding"]).to_pylist()
    return rows, np.ascontiguousarray(coll.embeddings()[1]).tobytes()


def verify_files(coll: Collection) -> None:
    """What `audiosim check` verifies: each part's size and sha256 against the manifest, and a checksummed read."""
    for p in coll.manifest.parts:
        path = coll.root / p.name
        assert path.stat().st_size == p.bytes and sha256_file(path) == p.sha256
        assert pq.read_table(path, page_checksum_verification=True).num_rows == p.rows
    ranges = sorted((p.min_id, p.max_id) for p in coll.manifest.parts)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:])), "id ranges of parts overlap"
    assert sum(p.rows for p in coll.manifest.parts) == len(coll)


CLASSES = ("Speech", "Dog", "Cat")


def toy_rows(n, rng, start, *, tags=False):
    ids = np.tile(np.array([[0, 1]], np.int16), (n, 1))  # Speech, then Dog
    scores = np.column_stack([rng.random(n).astype(np.float32), np.full(n, 0.125, np.float32)])
    return Rows(path=[f"/d/{start + i}.wav" for i in range(n)], content_sha256=[f"{start + i:064x}" for i in range(n)],
                offset_s=rng.uniform(0, 9, n), duration_s=rng.uniform(0.1, 2, n),
                label=[None if i % 3 == 0 else f"k{i % 2}" for i in range(n)],
                embedding=rng.standard_normal((n, 8)).astype(np.float32),
                tag_ids=ids if tags else None, tag_scores=scores if tags else None)


def test_compaction_keeps_every_row_and_the_index(demo_folder, tmp_path):
    root = tmp_path / "c"
    index_folder(demo_folder, root, embedder="logmel", segment_s=0.5, flush_every=1, compact=False)
    coll = Collection.open(root)
    with coll.writer() as w:  # gaps in the id ranges, and a relabel to None
        w.delete([3, 4, 40])
        w.set_labels({10: None})
        from audiosim.engine.store.indexing import ensure_index

        ensure_index(w)
    coll.refresh()
    before, index, revision, parts = snapshot(coll), coll.manifest.index, coll.revision, len(coll.manifest.parts)
    searcher = coll.searcher()
    hits_before = [h.to_dict() for h in searcher.search(id=[7, 55], k=5)[1]]
    assert parts == 20 and coll.manifest.index_fresh

    target = 3 * max(p.bytes for p in coll.manifest.parts)  # about three small parts per merged part
    with coll.writer() as w:
        report = compact(w, target_bytes=target)
    coll.refresh()
    assert report.parts_before == 20 and report.parts_after == len(coll.manifest.parts) < 10
    assert report.merged_parts == 20 and report.rows == len(coll)
    assert snapshot(coll) == before
    assert coll.revision == revision and coll.manifest.index == index and coll.manifest.index_fresh
    verify_files(coll)
    searcher.refresh()
    assert [h.to_dict() for h in searcher.search(id=[7, 55], k=5)[1]] == hits_before
    fresh = Collection.open(root)
    assert [h.to_dict() for h in fresh.searcher().search(id=[7, 55], k=5)[1]] == hits_before


def test_tags_column_survives(tmp_path, rng):
    coll = Collection.create(tmp_path / "t", embedder=EMB, pooling=POOL, class_names=CLASSES)
    with coll.writer() as w:
        for start in range(0, 60, 6):
            w.append(toy_rows(6, rng, start, tags=True))
    before = snapshot(coll)
    assert "tags" in before[0][0]
    report = compact_collection(coll.root)
    coll.refresh()
    assert report.new_parts == 1 and len(coll.manifest.parts) == 1
    assert snapshot(coll) == before
    items = coll.items()
    assert items.tag_ids[5, :2].tolist() == [0, 1] and (items.tag_ids[5, 2:] == -1).all()
    assert items.tag_scores[5, :2].tolist() == [before[0][5]["tags"][0]["score"], 0.125]
    verify_files(coll)


def test_plan_merges_small_parts_in_id_order_within_the_target():
    def part(i, size):
        return PartRecord(name=f"parts/p{i}.parquet", rows=1, bytes=size, sha256="0" * 64, min_id=10 * i, max_id=10 * i + 9)

    small = [part(i, 10) for i in range(7)]
    big = part(7, 60)
    shuffled = [small[3], big, small[0], small[6], small[1], small[5], small[2], small[4]]
    # sorted by id: s0 s1 s2 s3 s4 s5 s6 big; target 35: groups of at most three small parts
    groups = plan_compaction(shuffled, target_bytes=35)
    assert [[p.name for p in g] for g in groups] == [
        [f"parts/p{i}.parquet" for i in (0, 1, 2)], [f"parts/p{i}.parquet" for i in (3, 4, 5)]]  # p6 alone stays
    # a large part (at least half the target) ends a group and is never rewritten
    mixed = [part(0, 10), part(1, 10), part(2, 50), part(3, 10), part(4, 10)]
    assert [[p.name for p in g] for g in plan_compaction(mixed, target_bytes=100)] == [
        ["parts/p0.parquet", "parts/p1.parquet"], ["parts/p3.parquet", "parts/p4.parquet"]]
    assert plan_compaction([part(0, 10)], target_bytes=100) == []


def test_index_folder_compacts_past_the_threshold_and_the_cli(demo_folder, tmp_path):
    root = tmp_path / "auto"
    report = index_folder(demo_folder, root, embedder="logmel", segment_s=0.25, flush_every=1)
    assert report.compaction is None and report.parts == 20 <= AUTO_COMPACT_PARTS  # at the threshold: left alone
    coll = Collection.open(root)
    with coll.writer() as w:  # push it past the threshold
        for start in range(0, 13 * 2, 2):
            w.append(Rows(path=[f"/x/{start}.wav"] * 2, content_sha256=["0" * 64] * 2, offset_s=np.zeros(2),
                          duration_s=np.ones(2), label=[None, "x"], embedding=np.ones((2, coll.dim), np.float32)))
    coll.refresh()
    before = snapshot(coll)
    again = index_folder(demo_folder, root)
    assert again.embedded == 0 and again.compaction["parts_before"] == 33 and again.parts == 1
    assert len(list((root / "parts").glob("*.parquet"))) == 1  # the index commit removed the merged parts' files
    assert len(list((root / "parts").glob("*.vec"))) == 1  # and their vector files
    coll.refresh()
    assert snapshot(coll) == before and coll.manifest.index_fresh
    out = CliRunner().invoke(compact_cmd, ["--collection", str(root)], catch_exceptions=False)
    assert out.exit_code == 0 and "nothing to compact" in out.output and "1 part files" in out.output
    text = CliRunner().invoke(main, ["index", str(demo_folder), "--collection", str(root), "--quiet"]).output
    assert "compacted" not in text

    root2 = tmp_path / "cli"
    index_folder(demo_folder, root2, embedder="logmel", flush_every=2, compact=False)
    out = CliRunner().invoke(compact_cmd, ["--collection", str(root2), "--json"], catch_exceptions=False)
    got = json.loads(out.output)
    assert got["parts_before"] == 10 and got["parts_after"] == 1 and got["rows"] == 20


def test_interrupted_compaction_changes_nothing(tmp_path, rng, monkeypatch):
    coll = Collection.create(tmp_path / "i", embedder=EMB, pooling=POOL)
    with coll.writer() as w:
        for start in range(0, 20, 4):
            w.append(toy_rows(4, rng, start))
    before, manifest = snapshot(coll), coll.manifest

    from audiosim.engine.store.store import CollectionWriter

    def killed(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(CollectionWriter, "replace_parts", killed)
    with pytest.raises(KeyboardInterrupt):
        compact_collection(coll.root)
    monkeypatch.undo()
    coll.refresh()
    assert coll.manifest == manifest and snapshot(coll) == before
    on_disk = {f.name for f in (coll.root / "parts").glob("*.parquet")}
    assert len(on_disk) == len(manifest.parts) + 1  # the merged part, written but never named
    assert len(list((coll.root / "parts").glob("*.vec"))) == len(manifest.parts) + 1  # with its vector file
    with coll.writer() as w:
        w.append(toy_rows(1, rng, 100))  # any commit cleans up
    assert {f.name for f in (coll.root / "parts").glob("*.parquet")} == {p.name.split("/")[1] for p in coll.manifest.parts}
    assert {f.name for f in (coll.root / "parts").glob("*.vec")} == {
        p.name.split("/")[1].replace(".parquet", ".vec") for p in coll.manifest.parts}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0, -5, "big"])
def test_a_target_size_that_is_not_a_positive_number_is_a_clear_error(bad):
    """Issue 18: ``compact --target-mb nan`` / ``inf`` was a traceback (int() of nan/inf); the library refuses too."""
    from audiosim.errors import InvalidOptionError

    with pytest.raises(InvalidOptionError, match="target_bytes"):
        plan_compaction([], target_bytes=bad)
