"""``--prune`` drops vectors by path component, never by string prefix.

Sibling folders sharing a name prefix (``x/esc`` and ``x/esc300``) are indexed into one
collection; pruning ``x/esc`` drops only the vectors of its own missing files (sub-folders
included) and never a vector of ``x/esc300``, and the other way round. Golden cases pin
:func:`audiosim.files.is_under`, the test ingest relies on.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from audiosim.cli import main
from audiosim.engine.ingest.indexer import index_folder
from audiosim.engine.store.store import CollectionStore
from audiosim.files import is_under


@pytest.mark.parametrize("path,root,expected", [
    ("/x/esc/a.wav", "/x/esc", True),
    ("/x/esc/sub/a.wav", "/x/esc", True),
    ("/x/esc/a.wav", "/x/esc/", True),
    ("/x/esc300/a.wav", "/x/esc", False),
    ("/x/esc.wav", "/x/esc", False),
    ("/x/es/a.wav", "/x/esc", False),
    ("/x/esc", "/x/esc", True),
    ("/x/esc/a.wav", "/", True),
])
def test_is_under_compares_path_components(path, root, expected):
    assert is_under(path, root) is expected


@pytest.fixture
def siblings(tmp_path):
    from audiosim.engine.audio.synth import write_demo_folder

    x = tmp_path / "x"
    write_demo_folder(x / "esc", per_kind=1, seed=1)
    write_demo_folder(x / "esc" / "sub", per_kind=1, seed=2)
    write_demo_folder(x / "esc300", per_kind=1, seed=3)
    shutil.rmtree(x / "esc" / "sub" / "tone")  # keep the run short: 9 + 5 files
    coll = tmp_path / "coll"
    for f in ("esc", "esc300"):
        index_folder(x / f, coll, embedder="logmel", label_from="none")
    return x, coll


def _files(coll) -> set[str]:
    return set(CollectionStore.open(coll).files())


def test_prune_of_a_folder_leaves_its_prefix_sibling_alone(siblings):
    x, coll = siblings
    everything = _files(coll)
    esc300 = {p for p in everything if "/esc300/" in p}
    assert len(esc300) == 5 and len(everything) == 14
    gone = [next((x / "esc" / "tone").iterdir()), next((x / "esc" / "sub" / "chirp").iterdir())]
    for f in gone:
        f.unlink()
    report = index_folder(x / "esc", coll, embedder="logmel", label_from="none", prune=True)
    assert report.pruned_files == 2 and report.embedded == 0
    assert _files(coll) == everything - {str(f) for f in gone}
    assert esc300 <= _files(coll)


def test_prune_of_the_prefix_sibling_leaves_the_shorter_name_alone(siblings):
    x, coll = siblings
    everything = _files(coll)
    victim = next((x / "esc300" / "noise").iterdir())
    victim.unlink()
    shutil.rmtree(x / "esc")  # the other folder is gone entirely: still not pruned by a run on esc300
    report = index_folder(x / "esc300", coll, embedder="logmel", label_from="none", prune=True)
    assert report.pruned_files == 1
    assert _files(coll) == everything - {str(victim)}


def test_prune_from_the_command_line_with_a_trailing_slash(siblings):
    x, coll = siblings
    everything = _files(coll)
    victim = next((x / "esc" / "hum").iterdir())
    victim.unlink()
    r = CliRunner().invoke(main, ["index", str(x / "esc") + "/", "--collection", str(coll), "--embedder", "logmel",
                                  "--label-from", "none", "--prune", "--json", "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["pruned_files"] == 1
    assert _files(coll) == everything - {str(victim)}
