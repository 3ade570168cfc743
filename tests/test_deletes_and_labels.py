"""Deletes stick, label sources are remembered, ``info`` counts the unlabelled, ``index --strict`` (issue 21 items 6,
10, 16), on copies of the synthetic demo folder indexed with the weight-free ``logmel`` embedder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import audiosim
from audiosim.cli import main
from audiosim.errors import IngestFailuresError


def run(*args, code=0):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r


def index(folder, coll, *extra, code=0):
    return json.loads(run("index", folder, "--collection", coll, "--embedder", "logmel", "--json", "--quiet", *extra,
                          code=code).output)


def labels_by_name(coll) -> dict[str, str | None]:
    return {Path(r["path"]).name: r["label"] for r in audiosim.open_collection(coll).records(("path", "label"))}


@pytest.fixture
def folder(demo_folder, tmp_path):
    """A private copy of the synthetic demo folder (5 kinds x 4 clips) and a labels CSV naming 19 of its 20 files
    plus one file that does not exist yet (``late.wav``)."""
    mine = tmp_path / "synthetic"
    shutil.copytree(demo_folder, mine)
    rows = [f"{p.name},cat_{p.stem}" for p in sorted(mine.rglob("*.*")) if p.stem != "hum_03"] + ["late.wav,cat_late"]
    (tmp_path / "meta.csv").write_text("filename,category\n" + "\n".join(rows) + "\n")
    return mine


def test_deletes_stick_until_undelete_and_the_label_source_is_reapplied(folder, tmp_path):
    coll, table = tmp_path / "coll", tmp_path / "meta.csv"
    first = index(folder, coll, "--labels", table, "--label-column", "category", "--label-from", "none")
    assert first["embedded"] == 20 and first["labels"]["matched"] == 19
    assert labels_by_name(coll)["tone_00.wav"] == "cat_tone_00" and labels_by_name(coll)["hum_03.wav"] is None
    info = json.loads(run("info", "--collection", coll, "--json").output)
    assert info["unlabelled"] == 1 and sum(info["labels"].values()) + info["unlabelled"] == info["count"] == 20
    assert "; 1 unlabelled" in run("info", "--collection", coll).output.splitlines()[-1]

    tone = next(folder.rglob("tone_00.*"))
    out = run("delete", "--collection", coll, "--path", tone).output
    assert out.startswith("removed 1 vector;") and "1 file left out of later `audiosim index` runs" in out
    (folder / "chirp" / "late.wav").write_bytes((folder / "chirp" / "chirp_00.wav").read_bytes())

    again = index(folder, coll)  # no label options: the recorded CSV, column and --label-from none apply
    assert (again["new"], again["embedded"], again["deleted_skipped"], again["vectors"]) == (1, 1, 1, 20)
    labels = labels_by_name(coll)
    assert tone.name not in labels
    assert labels["late.wav"] == "cat_late" and labels["chirp_01.flac"] == "cat_chirp_01" and labels["hum_03.wav"] is None
    text = run("index", folder, "--collection", coll, "--embedder", "logmel", "--quiet").output
    assert "1 deleted (left out: `audiosim undelete` or --include-deleted embeds it again)" in text
    assert f"deleted      1 file left out" in run("info", "--collection", coll).output
    assert run("info", "--collection", coll, "--deleted").output.splitlines() == [str(tone)]

    r = run("undelete", "--collection", coll, "--path", folder / "nope.wav", code=2)
    assert "--deleted" in r.output and "Traceback" not in r.output
    assert "1 file off the deleted list" in run("undelete", "--collection", coll, "--path", tone).output
    back = index(folder, coll)
    assert back["embedded"] == 1 and back["deleted_skipped"] == 0 and back["vectors"] == 21
    assert labels_by_name(coll)[tone.name] == "cat_tone_00"  # labelled by the remembered CSV

    run("delete", "--collection", coll, "--path", tone)
    assert index(folder, coll)["embedded"] == 0
    forced = index(folder, coll, "--include-deleted")
    assert forced["embedded"] == 1 and forced["undeleted"] == 1
    assert audiosim.open_collection(coll).deleted == ()


def test_a_file_whose_every_vector_is_deleted_by_id_is_remembered(folder, tmp_path):
    coll = tmp_path / "coll"
    index(folder, coll)
    c = audiosim.open_collection(coll)
    hum = next(p for p, f in c.files().items() if Path(p).name == "hum_00.wav")
    assert c.delete(ids=list(c.files()[hum].ids)) == 1
    assert audiosim.open_collection(coll).deleted == (hum,)
    assert index(folder, coll)["deleted_skipped"] == 1
    assert audiosim.open_collection(coll).undelete() == [hum]
    assert index(folder, coll)["embedded"] == 1


def test_a_recorded_csv_that_is_gone_is_an_error_naming_the_fix(folder, tmp_path):
    coll, table = tmp_path / "coll", tmp_path / "meta.csv"
    index(folder, coll, "--labels", table, "--label-column", "category")
    moved = table.rename(tmp_path / "moved.csv")
    r = run("index", folder, "--collection", coll, "--embedder", "logmel", "--quiet", code=2)
    assert str(table) in r.output and "--labels PATH" in r.output
    assert index(folder, coll, "--labels", moved, "--label-column", "category")["relabelled"] == 0


def test_label_line_and_summary_agree(folder, tmp_path):
    text = run("index", folder, "--collection", tmp_path / "first", "--embedder", "logmel", "--labels",
               tmp_path / "meta.csv", "--label-column", "category", "--quiet").output
    line, summary = text.splitlines()[:2]  # new files are labelled as they are embedded: no stored label changed
    assert "19 of 20 files matched" in line and "changed" not in line and ", 0 relabelled," in summary
    coll = tmp_path / "coll"
    index(folder, coll)  # parent-folder labels
    relabel = tmp_path / "two.csv"
    relabel.write_text("path,label\nchirp_00.wav,sweep\ntone_01.wav,beep\n")
    text = run("index", folder, "--collection", coll, "--embedder", "logmel", "--labels", relabel, "--quiet").output
    line, summary = text.splitlines()[:2]
    assert line.endswith("2 of 20 files matched") and "changed" not in line
    assert ", 2 relabelled," in summary and summary.startswith("scanned 20 files: 0 new")
    assert labels_by_name(coll)["chirp_00.wav"] == "sweep"


def test_unknown_path_error_names_close_files_and_a_listing(folder, tmp_path):
    coll = tmp_path / "coll"
    index(folder, coll)
    typo = folder / "tone" / "tone_0.wav"
    r = run("delete", "--collection", coll, "--path", typo, code=2)
    assert f"holds no file {str(typo)!r}; did you mean " in r.output
    assert repr(str(folder / "tone" / "tone_00.wav")) in r.output.split("did you mean", 1)[1]
    assert f"`audiosim info --collection {coll} --files` lists the 20 files it holds" in r.output
    listing = run("info", "--collection", coll, "--files").output.splitlines()
    assert len(listing) == 20 and listing[0].split() == ["1", "chirp", str(folder / "chirp" / "chirp_00.wav")]
    files = json.loads(run("info", "--collection", coll, "--files", "--json").output)["files"]
    assert files[0] == {"path": str(folder / "chirp" / "chirp_00.wav"), "vectors": 1, "label": "chirp"}


def test_strict_exits_non_zero_when_a_file_failed_and_commits_the_rest(folder, tmp_path):
    (folder / "tone" / "broken.wav").write_text("not audio")
    coll = tmp_path / "coll"
    lax = index(folder, coll)
    assert lax["failed"] == 1 and lax["embedded"] == 20
    r = run("index", folder, "--collection", tmp_path / "strict", "--embedder", "logmel", "--quiet", "--strict", code=1)
    assert "1 failed" in r.output and "broken.wav" in r.output and "error: 1 file failed" in r.output
    assert len(audiosim.open_collection(tmp_path / "strict")) == 20
    doc = json.loads(run("index", folder, "--collection", tmp_path / "strict", "--embedder", "logmel", "--json",
                         "--strict", code=1).stdout)
    assert doc["failed"] == 1
    with pytest.raises(IngestFailuresError) as e:
        audiosim.index_folder(folder, tmp_path / "lib", embedder="logmel", strict=True)
    assert e.value.report.embedded == 20 and len(e.value.report.failures) == 1
    (folder / "tone" / "broken.wav").unlink()
    assert index(folder, tmp_path / "clean", "--strict")["failed"] == 0
