"""The code's structure holds: no import circle between audiosim modules, numpy-only `indexes/` and `eval/`,
the store alone writes collection.json, and the CLI's index kinds are the registry's.

Imports are read from the source (``ast``), including those inside functions, so a lazy import that
closes a circle counts too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", "build", "tests", "scripts", ".git", "docs"}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT).with_suffix("")
        if SKIP & set(rel.parts):
            continue
        parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
        mods[".".join(("audiosim",) + parts)] = p
    return mods


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        for name in _imports(p):
            if not name.startswith("audiosim."):
                continue
            while name not in mods and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in mods and name not in (m, "audiosim"):
                graph[m].add(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    assert _cycles(_graph()) == []


def test_the_oracle_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_indexes_and_eval_import_no_framework_and_no_pyarrow():
    banned = ("tensorflow", "torch", "pyarrow")
    for m, p in _modules().items():
        if m.startswith(("audiosim.indexes", "audiosim.eval")):
            bad = [n for n in _imports(p) if n.split(".")[0] in banned]
            assert not bad, (m, bad)


def test_only_the_store_names_the_manifest_file():
    for m, p in _modules().items():
        if m in ("audiosim.engine.store", "audiosim.engine.manifest", "audiosim.engine.integrity"):
            continue
        assert '"collection.json"' not in p.read_text(), m


def test_the_cli_index_kinds_are_the_registry_s():
    from audiosim.commands.index import INDEX_KINDS
    from audiosim.indexes.kinds import kind_names

    assert sorted(INDEX_KINDS) == sorted(kind_names())
