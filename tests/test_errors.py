"""One exception hierarchy: every error class lives in errors.py (the service's HTTP errors excepted), each an AudiosimError."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import audiosim.errors as errors

ROOT = Path(__file__).resolve().parents[1]
HTTP_ERRORS = ROOT / "service" / "errors.py"  # ApiError and its HTTP-status subclasses map library errors to answers
SKIP = {"tests", "build", ".venv", "node_modules", "dist"}


def _error_classes_outside():
    found = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP or path == ROOT / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and any(
                    (getattr(b, "id", None) or getattr(b, "attr", "")).endswith(("Error", "Exception")) for b in node.bases):
                if (path == HTTP_ERRORS and node.name != "ServeConfigError") or node.name.startswith("_"):
                    continue  # HTTP answers, and private control flow that never reaches a user
                found.append(f"{rel}:{node.lineno} {node.name}")
    return found


def test_every_error_class_is_in_errors_py():
    assert _error_classes_outside() == []


def test_one_hierarchy_under_audiosim_error():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception)]
    assert len(classes) > 20 and all(issubclass(c, errors.AudiosimError) for c in classes)
    assert all(c.__doc__ for c in classes)


def test_moved_names_stay_importable_where_they_were():
    from audiosim.engine.audio.decode import AudioLimitError
    from audiosim.engine.models.tags import UnknownTagError
    from audiosim.engine.search.regions import RegionError
    from audiosim.engine.store.manifest import ManifestError

    assert AudioLimitError is errors.AudioLimitError and ManifestError is errors.ManifestError
    assert RegionError is errors.RegionError and UnknownTagError("x", name="Dgo", suggestions=["Dog"]).suggestions == ["Dog"]


def test_the_bare_root_is_never_raised():
    """Every raise names its kind (a subclass of AudiosimError), so callers and the service can tell failures apart."""
    found = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for call in ast.walk(node.exc):
                    if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "AudiosimError":
                        found.append(f"{rel}:{node.lineno}")
    assert found == []
