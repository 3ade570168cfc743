"""Plug-in embedders: a tiny package installed into this venv registers one through the ``audiosim.embedders``
entry-point group; audiosim lists it without importing it, builds it lazily, holds it to the contract test and
indexes with it; a broken plug-in is a clear error. The package is uninstalled afterwards."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DIST = "audiosim-tiny-plugin-test"
MODULE = "audiosim_tiny_plugin_test"

PLUGIN_SOURCE = '''
"""A tiny plug-in embedder for audiosim's tests: RMS and zero-crossing rate per 0.5 s window."""
import numpy as np

from audiosim.engine.models.embedders.base import Embedder, EmbedderInfo, check_waveform, window_starts

IMPORTED = True


class TinyEmbedder(Embedder):
    def __init__(self, *, window_s: float = 0.5):
        self.window = int(16000 * window_s)
        self.info = EmbedderInfo(name="tinyplug", version="1", sample_rate=16000, dim=2, window_s=window_s,
                                 hop_s=window_s)

    def embed_frames(self, waveform):
        x = check_waveform(waveform)
        x = np.pad(x, (0, max(0, self.window - x.size)))
        starts = window_starts(x.size, window=self.window, hop=self.window)
        w = np.stack([x[s:s + self.window] for s in starts])
        rms = np.sqrt((w.astype(np.float64) ** 2).mean(axis=1))
        zcr = (np.diff(np.signbit(w), axis=1) != 0).mean(axis=1)
        return np.stack([rms, zcr], axis=1).astype(np.float32), self.frame_times(len(starts))


class NotAnEmbedder:
    pass
'''


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _pip(*args: str) -> subprocess.CompletedProcess:
    with open("/tmp/pip.lock", "a") as lock:  # the shared development venv: one pip at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    pytest.importorskip("setuptools", reason="building the test plug-in needs setuptools")
    src = tmp_path_factory.mktemp("plugin")
    (src / f"{MODULE}.py").write_text(PLUGIN_SOURCE)
    (src / "pyproject.toml").write_text(textwrap.dedent(f'''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{DIST}"
        version = "0.1"
        description = "RMS and zero-crossing rate per 0.5 s (a test plug-in)"

        [tool.setuptools]
        py-modules = ["{MODULE}"]

        [project.entry-points."audiosim.embedders"]
        tinyplug = "{MODULE}:TinyEmbedder"
        brokenplug = "{MODULE}:NotAnEmbedder"
        missingplug = "{MODULE}_nowhere:Thing"
    '''))
    r = _pip("install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(src))
    assert r.returncode == 0, r.stderr
    try:
        yield src
    finally:
        r = _pip("uninstall", "-y", "-q", DIST)
        assert r.returncode == 0, r.stderr


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_plugin_is_listed_lazily_and_built_on_demand(installed_plugin):
    out = json.loads(_run(textwrap.dedent(f'''
        import json, sys
        from audiosim.engine.models.embedders import available_embedders, describe_embedders, get_embedder
        names, texts = available_embedders(), describe_embedders()
        imported_by_listing = "{MODULE}" in sys.modules
        emb = get_embedder("tinyplug", window_s=0.25)
        print(json.dumps({{"names": names, "text": texts["tinyplug"], "lazy": not imported_by_listing,
                          "info": emb.info.to_dict()}}))
    ''')))
    assert "tinyplug" in out["names"] and "logmel" in out["names"]
    assert out["text"] == f"plug-in {DIST} 0.1: RMS and zero-crossing rate per 0.5 s (a test plug-in)"
    assert out["lazy"] and out["info"]["name"] == "tinyplug" and out["info"]["window_s"] == 0.25


def test_cli_lists_and_indexes_with_the_plugin(installed_plugin, demo_folder, tmp_path):
    cli = [sys.executable, "-m", "audiosim"]
    r = subprocess.run([*cli, "embedders"], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0 and "tinyplug" in r.stdout and "RMS and zero-crossing" in r.stdout
    coll = tmp_path / "c"
    r = subprocess.run([*cli, "index", str(demo_folder), "--collection", str(coll), "--embedder", "tinyplug"],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "info", "--collection", str(coll), "--json"], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert json.loads(r.stdout)["embedder"]["name"] == "tinyplug"
    for name, msg in (("brokenplug", "not an audiosim Embedder"), ("missingplug", "does not load")):
        r = subprocess.run([*cli, "index", str(demo_folder), "--collection", str(tmp_path / name), "--embedder", name],
                           capture_output=True, text=True, env=_env(), timeout=120)
        assert r.returncode == 2 and msg in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_plugin_passes_the_contract_test(installed_plugin):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" /
                        "test_embedder_contract.py"), "-k", "tinyplug or every_registered"],
                       capture_output=True, text=True, env=_env(), timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "9 passed" in r.stdout  # the contract's 8 checks on tinyplug, and the registry check
