"""The wheel installs exactly one top-level package, ``audiosim``, and works outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_only_the_audiosim_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT), "-w",
                    str(tmp_path / "whl")], check=True, cwd=tmp_path)
    [wheel] = list((tmp_path / "whl").glob("audiosim-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"audiosim"}
    for must in ("audiosim/cli.py", "audiosim/engine/store/store.py", "audiosim/indexes/flat.py", "audiosim/eval/__init__.py",
                 "audiosim/engine/models/embedders/yamnet.py", "audiosim/commands/__init__.py"):
        assert must in names
    assert not any(n.startswith(("audiosim/tests/", "audiosim/scripts/")) for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True)
    code = ("import audiosim, audiosim.cli; from audiosim.engine.models.embedders import get_embedder; "
            f"assert audiosim.__file__.startswith({str(target)!r}), audiosim.__file__; "
            "assert get_embedder('logmel').info.dim == 168")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
