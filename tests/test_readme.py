"""README's Python example runs as written (in an empty folder), and the quick start names the two commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_example_runs_as_written(tmp_path):
    r = subprocess.run([sys.executable, "-c", python_example()], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "30 clips embedded; 30 vectors"
    assert lines[1].startswith("30 logmel mu cosine revision")
    first = lines[2].split()
    assert first[:2] == ["1", "1.0"] and first[2] == "chirp" and first[3].endswith("chirp_01.flac")
    assert lines[-1] == "1 vector removed; 29 left"


def test_quick_start_is_two_make_commands():
    quick = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1)
    assert [ln.split()[:2] for ln in block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]
