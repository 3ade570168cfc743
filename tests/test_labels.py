"""Labels CSV: matching by file stem with a report of what matched; every way a table could silently label
nothing (wrong encoding, broken quoting, ragged rows, no matching file, contradicting rows) is a clear error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from audiosim.engine.store.labels import LabelCsvError, LabelReport, labels_from_csv, read_label_table, relabel_from_csv
from audiosim.errors import AudiosimError


@dataclass(frozen=True)
class Item:
    path: str
    label: str | None = None


ITEMS = [Item("/d/dogs/dog_1.wav", "dogs"), Item("/d/dogs/dog_2.ogg", "dogs"), Item("/d/cat.flac"),
         Item("/d/x/rain.wav", "x")]


def _csv(tmp_path, text: str | bytes, name="labels.csv"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_rows_match_by_stem_and_the_report_counts_everything(tmp_path):
    p = _csv(tmp_path, "filename,category\n"
                       "dog_1.wav,dog\n"
                       "audio/dog_2.wav, dog \n"  # a path and padded label: stem dog_2, label 'dog'
                       "cat.wav,\n"  # empty label: ignored
                       "dog_1.mp3,dog\n"  # same stem again, same label
                       "ghost.wav,owl\n"
                       "\n")
    items, report = relabel_from_csv(ITEMS, p, label_column="category")
    assert [it.label for it in items] == ["dog", "dog", None, "x"]
    assert report == LabelReport(csv=str(p), key_column="filename", label_column="category", rows=5, files=4,
                                 matched=2, changed=2, unmatched_rows=1, empty_labels=1, duplicate_stems=("dog_1",),
                                 unmatched_examples=("ghost",))
    assert report.to_dict()["duplicate_stems"] == ["dog_1"]
    line = report.summary()
    assert "2 of 4 files matched" in line and "1 labelled name matches no file (e.g. ghost)" in line
    assert "changed" not in line  # which stored labels changed is the run summary's "relabelled" count
    assert "1 row with an empty label ignored" in line and "1 name on several rows (e.g. dog_1)" in line
    assert labels_from_csv(ITEMS, p, label_column="category") == items


def test_bom_semicolons_and_path_column(tmp_path):
    p = _csv(tmp_path, "\ufeffpath;label\nrain.wav;rain\n".encode("utf-8"))
    items, report = relabel_from_csv(ITEMS, p)
    assert items[3].label == "rain" and report.key_column == "path" and report.matched == 1


def test_non_utf8_is_a_clear_error_naming_the_encoding_to_use(tmp_path):
    p = _csv(tmp_path, "path,label\ncat.wav,caf\xe9\n".encode("latin-1"))
    with pytest.raises(LabelCsvError, match=r"not UTF-8 text \(byte 0xe9 at line 2\); save it as UTF-8.*iconv"):
        relabel_from_csv(ITEMS, p)


@pytest.mark.parametrize("text,where", [
    ('path,label\ncat.wav,"cat\nrain.wav,rain\n', "line 3: unexpected end of data"),  # unclosed quote
    ('path,label\n"cat.wav"x,cat\n', "line 2"),  # text after a closing quote
    ("path,label\ncat.wav,cat,extra\n", "line 2: 3 cells, the header has 2"),
    ("path,label\ncat.wav\n", "line 2: 1 cells, the header has 2"),
])
def test_malformed_csv_is_a_clear_error(tmp_path, text, where):
    with pytest.raises(LabelCsvError, match="malformed CSV at " + where):
        relabel_from_csv(ITEMS, _csv(tmp_path, text))


@pytest.mark.parametrize("text,message", [
    ("file,category\ncat.wav,cat\n", "needs a path/filename/file column and a 'label' column"),
    ("name,label\ncat.wav,cat\n", "needs a path/filename/file column"),
    ("path,label\n", "has a header but no rows"),
    ("", "needs a path/filename/file column"),
    ("path,label\nlion.wav,lion\ntiger.wav,tiger\n", "labels none of the 4 files"),
    ("path,label\ncat.wav,cat\ncat.ogg,dog\n", "different labels on different rows: cat \\(cat, dog\\)"),
])
def test_tables_that_would_label_nothing_or_contradict_themselves_are_errors(tmp_path, text, message):
    with pytest.raises(LabelCsvError, match=message) as e:
        relabel_from_csv(ITEMS, _csv(tmp_path, text))
    assert isinstance(e.value, AudiosimError)


def test_a_missing_file_is_a_typed_error(tmp_path):
    with pytest.raises(LabelCsvError, match="cannot read the labels CSV"):
        read_label_table(tmp_path / "nope.csv")


def test_no_files_to_label_is_not_an_error(tmp_path):
    items, report = relabel_from_csv([], _csv(tmp_path, "path,label\ncat.wav,cat\n"))
    assert items == [] and report.files == 0 and report.unmatched_rows == 1
