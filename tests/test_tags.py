"""Tags: per-vector class scores pooled over the right frames, the top tags stored in a parquet
``tags`` column and read back unchanged, ranking and filtering by a tag, tag names resolved
exactly (any case) with suggestions for unknown ones, "why similar", tag counts; with the real
YAMNet weights a generated sine ranks above white noise for "Sine wave".
"""

from __future__ import annotations

import numpy as np
import pytest

from audiosim.engine.models.embedders import get_embedder
from audiosim.engine.models.embedders.audioset_classes import audioset_names, yamnet_names
from audiosim.engine.models.embedders.base import NoClassifierHeadError, class_names_sha256
from audiosim.engine.models.tags import (ClassMap, Tag, TagDataError, UnknownTagError, has_tag, pool_scores, rank_by_tag,
                                  shared_tags, tag_counts, tag_score, tags_from_arrow, tags_to_arrow, top_tags)
from audiosim.errors import AudiosimError

SR = 16000


def test_pool_scores_per_vector_over_its_frames():
    s = np.array([[0.1, 0.9], [0.3, 0.5], [0.8, 0.1], [0.2, 0.2]], dtype=np.float32)
    members = [np.array([0, 1]), np.array([1, 2, 3]), np.array([False, False, True, False])]
    np.testing.assert_allclose(pool_scores(s, members), [[0.3, 0.9], [0.8, 0.5], [0.8, 0.1]])
    np.testing.assert_allclose(pool_scores(s, members, how="mean"), [[0.2, 0.7], [13 / 30, 0.8 / 3], [0.8, 0.1]],
                               rtol=1e-6)
    np.testing.assert_allclose(pool_scores(s), [[0.8, 0.9]])
    np.testing.assert_allclose(pool_scores(s, how="mean"), [[0.35, 0.425]])
    with pytest.raises(TagDataError, match="vector 1 has no frames"):
        pool_scores(s, [np.array([0]), np.array([], dtype=np.int64)])
    with pytest.raises(TagDataError, match="unknown class-score pooling 'median'"):
        pool_scores(s, how="median")
    with pytest.raises(TagDataError, match="at least one frame"):
        pool_scores(np.zeros((0, 3)))


def test_top_tags_best_first_ties_to_the_lower_class():
    pooled = np.array([[0.1, 0.5, 0.5, 0.9, 0.0], [0.0, 0.0, 0.0, 0.0, 0.2]], dtype=np.float32)
    ids, scores = top_tags(pooled, n=3)
    assert ids.dtype == np.int16 and scores.dtype == np.float32
    assert ids.tolist() == [[3, 1, 2], [4, 0, 1]]
    np.testing.assert_allclose(scores, [[0.9, 0.5, 0.5], [0.2, 0.0, 0.0]])
    assert top_tags(pooled, n=50)[0].shape == (2, 5)  # never more than the classes
    with pytest.raises(TagDataError, match="NaN"):
        top_tags(np.array([[np.nan, 1.0]]))


def test_tags_stored_in_a_parquet_column_and_read_back(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(0)
    ids, scores = top_tags(rng.random((7, 521)).astype(np.float32), n=10)
    ids[4, 6:] = -1  # a row stored with fewer tags
    scores[4, 6:] = np.nan
    col = tags_to_arrow(ids, scores)
    assert col.type == pa.list_(pa.struct([("class", pa.int16()), ("score", pa.float32())]))
    old_rows = pa.array([None, None], type=col.type)  # e.g. written before the embedder had a head
    table = pa.table({"id": np.arange(9), "tags": pa.concat_arrays([col, old_rows])})
    pq.write_table(table, tmp_path / "part.parquet", row_group_size=4)
    back = pq.read_table(tmp_path / "part.parquet")["tags"]
    assert back.num_chunks >= 2  # several row groups: the reader gets a chunked column
    got_ids, got_scores = tags_from_arrow(back)
    assert got_ids.shape == (9, 10)
    np.testing.assert_array_equal(got_ids[:7], ids)
    np.testing.assert_array_equal(got_scores[:7], scores)  # NaN where padded, exactly equal elsewhere
    assert (got_ids[7:] == -1).all() and np.isnan(got_scores[7:]).all()
    sliced_ids, _ = tags_from_arrow(col.slice(2, 3), n=4)  # offsets of a slice are absolute
    np.testing.assert_array_equal(sliced_ids, ids[2:5, :4])
    names = [f"class {i}" for i in range(521)]
    first = ClassMap(tuple(names)).tags(got_ids[4], got_scores[4])
    assert [t.index for t in first] == ids[4, :6].tolist() and isinstance(first[0], Tag)


def test_rank_by_tag_filter_and_score_lookup():
    ids = np.array([[3, 1, -1], [1, 3, 0], [0, 2, 1], [2, 0, 4]], dtype=np.int16)
    scores = np.array([[0.9, 0.2, np.nan], [0.7, 0.6, 0.1], [0.5, 0.4, 0.7], [0.8, 0.3, 0.1]], dtype=np.float32)
    rows, s = rank_by_tag(ids, scores, 1)
    assert rows.tolist() == [1, 2, 0] and s.tolist() == pytest.approx([0.7, 0.7, 0.2])  # tie: lower row first
    assert rank_by_tag(ids, scores, 1, k=1)[0].tolist() == [1]
    assert rank_by_tag(ids, scores, 1, min_score=0.5)[0].tolist() == [1, 2]
    assert rank_by_tag(ids, scores, 5)[0].tolist() == []
    assert has_tag(ids, scores, 0, min_score=0.2).tolist() == [False, False, True, True]
    np.testing.assert_allclose(tag_score(ids, scores, 4), [np.nan, np.nan, np.nan, 0.1])


def test_tag_names_resolve_exactly_in_any_case():
    cm = ClassMap(tuple(yamnet_names()))
    assert cm.resolve("Sine wave") == cm.names.index("Sine wave")
    assert cm.resolve("  dog ") == cm.resolve("DOG") == cm.names.index("Dog")
    assert cm.resolve("walk, footsteps") == cm.names.index("Walk, footsteps")
    assert cm.sha256 == class_names_sha256(yamnet_names()) and len(cm) == 521


@pytest.mark.parametrize("typed,expected", [("Dgo", "Dog"), ("sine wav", "Sine wave"), ("footsteps", "Walk, footsteps"),
                                            ("dog barking", "Dog"), ("chainsw", "Chainsaw")])
def test_an_unknown_tag_is_a_clear_error_with_suggestions(typed, expected):
    cm = ClassMap(tuple(yamnet_names()))
    with pytest.raises(UnknownTagError) as info:
        cm.resolve(typed)
    err = info.value
    assert isinstance(err, AudiosimError) and expected in err.suggestions
    assert f"unknown tag {typed!r}" in str(err) and repr(expected) in str(err) and "audiosim tags" in str(err)


def test_a_tag_with_nothing_close_still_names_the_fix():
    with pytest.raises(UnknownTagError, match=r"unknown tag 'qqqq'\. Tags are the exact class names") as info:
        ClassMap(tuple(yamnet_names())).resolve("qqqq")
    assert info.value.suggestions == []


def test_shared_tags_and_tag_counts():
    q = [Tag("Dog", 0, 0.9), Tag("Bark", 1, 0.6), Tag("Speech", 2, 0.3)]
    h = [Tag("Bark", 1, 0.8), Tag("Animal", 5, 0.7), Tag("Dog", 0, 0.5), Tag("Speech", 2, 0.3)]
    assert [(s.name, s.query_score, s.hit_score) for s in shared_tags(q, h)] == [
        ("Bark", 0.6, 0.8), ("Dog", 0.9, 0.5), ("Speech", 0.3, 0.3)]
    assert shared_tags(q, []) == []
    ids = np.array([[0, 1], [1, 0], [2, -1]], dtype=np.int16)
    scores = np.array([[0.9, 0.1], [0.5, 0.3], [0.2, np.nan]], dtype=np.float32)
    assert tag_counts(ids, scores, ["Dog", "Bark", "Speech"]) == [("Dog", 2), ("Bark", 1), ("Speech", 1)]
    assert tag_counts(ids, scores, ["Dog", "Bark", "Speech"], min_score=0.4) == [("Bark", 1), ("Dog", 1)]


def test_builtin_audioset_lists():
    full, yam = audioset_names(), yamnet_names()
    assert len(full) == 527 and len(yam) == 521 and len(set(full)) == 527
    assert set(full) - set(yam) == {"Male speech, man speaking", "Female speech, woman speaking", "Battle cry",
                                    "Male singing", "Female singing", "Funny music"}
    assert (full[0], full[74], full[500], full[526]) == ("Speech", "Dog", "Silence", "Field recording")


def test_an_embedder_without_a_head_says_so():
    emb = get_embedder("logmel")
    assert emb.class_names() is None and emb.class_map_sha256() is None and ClassMap.of(emb) is None
    with pytest.raises(NoClassifierHeadError, match="logmel embedder has no classifier head.*yamnet or panns"):
        emb.embed_frames_with_scores(np.zeros(SR, np.float32))


def test_real_yamnet_ranks_a_sine_above_noise_for_sine_wave(yamnet_tflite, sine, white_noise, silence, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    emb = get_embedder("yamnet", weights=str(yamnet_tflite))
    cm = ClassMap.of(emb)
    assert cm.sha256 == emb.class_map_sha256()
    pooled = np.concatenate([pool_scores(emb.embed_frames_with_scores(w)[2]) for w in (white_noise, sine, silence)])
    sine_wave = cm.resolve("sine wave")
    assert pooled[1, sine_wave] > pooled[0, sine_wave]
    ids, scores = top_tags(pooled)
    pq.write_table(pa.table({"tags": tags_to_arrow(ids, scores)}), tmp_path / "t.parquet")
    ids, scores = tags_from_arrow(pq.read_table(tmp_path / "t.parquet")["tags"])
    rows, _ = rank_by_tag(ids, scores, sine_wave)
    assert rows[0] == 1, [cm.tags(i, s)[:3] for i, s in zip(ids, scores)]
    assert "White noise" in [t.name for t in cm.tags(ids[0], scores[0])[:3]]


# --------------------------------------------------------------------------- ESC-50 tag benchmark


def test_the_esc50_mapping_has_one_line_per_class_with_exact_audioset_names():
    from audiosim.eval.tag_bench import load_mapping, mapped_columns

    mapping = load_mapping()
    assert [m.target for m in mapping] == list(range(50))
    assert sorted(m.category for m in mapping if not m.audioset) == ["can_opening", "drinking_sipping",
                                                                     "washing_machine"]
    assert all(m.note for m in mapping if not m.audioset)  # each unmapped class says why
    assert len(mapped_columns(mapping, yamnet_names())) == 47
    assert len(mapped_columns(mapping, audioset_names())) == 47  # PANNs has every name too
    used = [n for m in mapping for n in m.audioset]
    assert len(used) == len(set(used))  # no AudioSet class serves two ESC-50 classes


def test_the_mapping_follows_the_esc50_metadata(esc50_root):
    import csv

    from audiosim.eval.tag_bench import load_mapping

    with open(esc50_root / "meta" / "esc50.csv", newline="") as f:
        official = {int(r["target"]): r["category"] for r in csv.DictReader(f)}
    assert {m.target: m.category for m in load_mapping()} == official


def test_tag_precision_at_k_golden():
    from audiosim.eval.tag_bench import CategoryMapping, precision_at_k

    names = ["Dog", "Cat", "Rain", "Wind"]
    mapping = [CategoryMapping(0, "dog", ("Dog",)), CategoryMapping(1, "cat", ("Cat",)),
               CategoryMapping(2, "weather", ("Rain", "Wind")), CategoryMapping(3, "other", ())]
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    s = np.zeros((8, 4))
    s[:, 0] = [0.9, 0.1, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0]  # dog: top-2 = clips 0 (dog), 2 (cat)
    s[:, 1] = [0.0, 0.0, 0.7, 0.6, 0.0, 0.0, 0.0, 0.0]  # cat: clips 2, 3
    s[:, 2] = [0.0, 0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0]  # weather: max(Rain, Wind)
    s[:, 3] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0]
    r = precision_at_k(s, y, mapping, names, k=2)
    assert r.per_category == {"dog": 0.5, "cat": 1.0, "weather": 1.0} and r.unmapped == ("other",)
    assert r.mean_precision == pytest.approx(2.5 / 3) and r.to_dict()["n_mapped"] == 3
    # with only each clip's top-1 class kept, clip 2's cat score (below its dog score) is gone: cat's
    # second place goes to the lowest-index clip without the class (clip 0, a dog)
    assert precision_at_k(s, y, mapping, names, k=2, top_n=1).per_category == {"dog": 0.5, "cat": 0.5, "weather": 1.0}
