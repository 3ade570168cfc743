"""Install without make (issue 21 item 2): ``python -m build`` makes a wheel that carries every data file, and the
wheel installed into a fresh virtual environment runs ``audiosim --help`` and ``audiosim embedders``.

No network: the wheel is built without build isolation, installed with ``--no-deps``, and the fresh environment
reaches the dependencies (numpy, click, ...) through a ``.pth`` line naming this project's site-packages. The
project's own editable install is not visible there (``.pth`` files of a directory named by a ``.pth`` line are not
run), so the ``audiosim`` that answers is the wheel's, which the test checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("anomaly", "commands", "engine", "eval", "indexes", "service")


def _tracked_data_files() -> list[str]:
    """Every file of the package that is not Python source (class maps, the page's static files, ...)."""
    out = subprocess.run(["git", "ls-files", *PACKAGE_DIRS], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if not f.endswith(".py")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="python -m build needs the 'build' package (pip install 'audiosim[test]')")
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                       cwd=out, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    [whl] = out.glob("audiosim-*.whl")
    return whl


def test_the_wheel_carries_the_data_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = _tracked_data_files()
    assert "eval/esc50_audioset.csv" in data and "service/static/index.html" in data
    missing = [f for f in data if f"audiosim/{f}" not in names]
    assert not missing, f"not packaged (add them to [options.package_data] in setup.cfg): {missing}"
    assert any(n.endswith("entry_points.txt") for n in names)


def test_the_wheel_installed_in_a_fresh_venv_runs_the_cli(wheel, tmp_path):
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "AUDIOSIM_OFFLINE": "1",
           "LANG": os.environ.get("LANG", "C.UTF-8")}
    where = subprocess.run([str(py), "-c", "import audiosim, audiosim.service; print(audiosim.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout  # the wheel's copy, not the checkout
    cli = venv / "bin" / "audiosim"
    helped = subprocess.run([str(cli), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "index" in helped.stdout and "query" in helped.stdout and "serve" in helped.stdout
    listed = subprocess.run([str(cli), "embedders"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert {ln.split()[0] for ln in listed.stdout.splitlines()} >= {"logmel", "yamnet", "panns", "vggish", "vae"}
    static = subprocess.run([str(py), "-c", "from importlib.resources import files; "
                             "print(files('audiosim.service').joinpath('static/index.html').is_file(), "
                             "files('audiosim.eval').joinpath('esc50_audioset.csv').is_file())"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert static.stdout.split() == ["True", "True"], static.stderr[-2000:]
