"""README is a user's document: its Python example runs as written (in an empty folder) with public names only, the
quick start names the two commands, the table of contents matches the sections, the install section covers pip,
a wheel and make, and no development jargon is left (issue 21 items 2, 17, 18)."""

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


def _sections() -> dict[str, str]:
    text = README.read_text()
    return {m.group(1): body for m in re.finditer(r"^## (.+)$", text, re.M)
            for body in [text[m.end():].split("\n## ", 1)[0]]}


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def test_the_example_uses_public_names_only():
    code = python_example()
    imports = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", code, re.M)
    assert imports == ["audiosim"]
    import audiosim

    for name in set(re.findall(r"\baudiosim\.(\w+)", code)):
        assert name in audiosim.__all__, name


def test_the_table_of_contents_lists_every_section_and_its_links_resolve():
    sections = _sections()
    toc = re.findall(r"^- \[(.+?)\]\(#([\w-]+)\)$", sections["Contents"], re.M)
    assert [t for t, _ in toc] == [t for t in sections if t != "Contents"]
    assert all(anchor == _anchor(title) for title, anchor in toc)
    for anchor in re.findall(r"\]\(#([\w-]+)\)", README.read_text()):
        assert anchor in {_anchor(t) for t in sections}, anchor
    for doc in re.findall(r"\]\((docs/[\w./-]+?)(?:#[\w-]+)?\)", README.read_text()):
        assert (README.parent / doc).is_file(), doc


def test_install_covers_pip_a_wheel_and_make():
    install = _sections()["Install"]
    for needle in ("pip install .", "pip install '.[serve]'", "python -m build", "make install", "du -sh", "GB"):
        assert needle in install, needle


def test_user_sections_are_there_and_no_jargon_is_left():
    sections = _sections()
    for title in ("Index and search your recordings", "Serve: an HTTP API and a web page", "Long recordings and tags",
                  "Benchmarks on ESC-50", "Anomaly detection", "Python API", "What the embeddings capture",
                  "Troubleshooting", "Search speed and large collections", "Duplicates and a map of the collection",
                  "Your own model and text search"):
        assert title in sections, title
    capture = sections["What the embeddings capture"]
    assert "timbre" in capture and "speaker" in capture and "scene" in capture and "what is said" in capture
    text = README.read_text()
    for jargon in ("seed thesis", "the issue", "issue's", ".ci/run` points", "engine.audio.synth", "seed 000"):
        assert jargon not in text, jargon
    assert not re.search(r"^\| .*\| (p50|[0-9.]+ s) ", text, re.M)  # measured figures live in docs/benchmarks.md
