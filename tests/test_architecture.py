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
    limit = sys.getrecursionlimit()  # restored below: other tests (the service's nesting guard) rely on the default
    sys.setrecursionlimit(max(limit, 10_000))
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

    try:
        for v in graph:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
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
        if m in ("audiosim.engine.store.store", "audiosim.engine.store.manifest", "audiosim.engine.store.integrity"):
            continue
        assert '"collection.json"' not in p.read_text(), m


def test_the_cli_index_kinds_are_the_registry_s():
    from audiosim.commands.index import INDEX_KINDS
    from audiosim.indexes.kinds import kind_names

    assert sorted(INDEX_KINDS) == sorted(kind_names())


# ----------------------------------------------------------------------------------------------
# The engine's layers: audio < models < store < ingest < training, search (engine/__init__.py)

def _layer_rank() -> dict[str, int]:
    from audiosim.engine import LAYERS

    rank = {}
    for i, layer in enumerate(LAYERS):
        for name in (layer if isinstance(layer, tuple) else (layer,)):
            rank[name] = i
    return rank


def _engine_layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["audiosim", "engine"] else None


def test_every_engine_module_sits_in_a_layer():
    rank = _layer_rank()
    for m in _modules():
        layer = _engine_layer(m)
        assert layer is None or layer in rank, f"{m} is in no layer of audiosim.engine.LAYERS"


def test_engine_imports_go_down_the_layers_only():
    rank = _layer_rank()
    upward = []
    for m, deps in _graph().items():
        src = _engine_layer(m)
        if src is None:
            continue
        for d in deps:
            dst = _engine_layer(d)
            if dst is not None and dst != src and rank[dst] >= rank[src]:
                upward.append(f"{m} -> {d}")
    assert upward == []


def test_the_layer_check_sees_an_upward_import():
    graph = {"audiosim.engine.audio.decode": {"audiosim.engine.store.store"}}
    rank = {"audio": 0, "store": 2}
    bad = [(m, d) for m, ds in graph.items() for d in ds if rank[_engine_layer(d)] >= rank[_engine_layer(m)]]
    assert bad == [("audiosim.engine.audio.decode", "audiosim.engine.store.store")]


def _package_lines() -> dict[str, int]:
    """Non-test .py lines per package; engine's sub-packages count separately."""
    counts: dict[str, int] = {}
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT)
        if SKIP & set(rel.parts):
            continue
        parts = rel.parts[:-1]
        key = "/".join(parts[:2]) if parts[:1] == ("engine",) and len(parts) > 1 else (parts[0] if parts else ".")
        counts[key] = counts.get(key, 0) + len(p.read_text().splitlines())
    return counts


def test_no_package_holds_more_than_a_quarter_of_the_code():
    counts = _package_lines()
    total = sum(counts.values())
    big = {k: round(v / total, 3) for k, v in counts.items() if v > 0.25 * total}
    assert big == {}, big


def test_the_lazy_cli_table_matches_the_commands():
    """`audiosim --help` prints COMMANDS' one-line help without importing the commands: it must be theirs."""
    from audiosim.cli import COMMANDS, load_command

    for name, (_, _, short) in COMMANDS.items():
        cmd = load_command(name)
        assert cmd.name == name
        assert cmd.get_short_help_str(limit=1000) == short, name


def test_cli_help_imports_no_command():
    import subprocess

    code = "import sys, audiosim.cli as c; c.main(['--help'], standalone_mode=False); " \
           "print(sorted(m for m in sys.modules if m.startswith(('audiosim.engine', 'audiosim.indexes', 'audiosim.anomaly', 'audiosim.service')) or m in set(f'audiosim.commands.{v[0]}' for v in c.COMMANDS.values())))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_setup_cfg_lists_every_package():
    """A package missing from setup.cfg works in the editable install but is absent from the wheel."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {m for m, p in _modules().items() if p.name == "__init__.py"}
    assert listed == found
