"""Finding the audio files under a folder: what ingest, repair and the VAE data read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from audiosim.engine.audio.decode import is_audio_path
from audiosim.errors import InvalidOptionError
from audiosim.files import is_under

LABEL_SOURCES = ("parent", "none")


@dataclass(frozen=True)
class FileItem:
    """One recording to ingest, with its optional label."""

    path: str
    label: str | None = None


@dataclass(frozen=True)
class Scan:
    """The audio files found under a folder, and the entries that could not be read."""

    items: tuple[FileItem, ...]
    skipped: tuple[dict, ...] = ()


def scan_folder(folder: str | Path, *, label_from: str = "parent", within: str | Path | None = None) -> Scan:
    """Every audio file under ``folder`` (recursive, sorted); label = parent folder name below the root.

    ``within``: a file whose real path (symbolic links followed) lies outside this folder is left
    out and reported in ``skipped`` (the service confines index jobs to its ``--root`` this way).
    """
    fence = Path(within).expanduser().resolve() if within is not None else None
    if label_from not in LABEL_SOURCES:
        raise InvalidOptionError(f"label_from must be one of {LABEL_SOURCES}, got {label_from!r}")
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise InvalidOptionError(f"{folder} is not a folder")
    items, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: skipped.append(
            {"path": e.filename, "error": type(e).__name__, "message": e.strerror or str(e)})):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            if not is_audio_path(p):
                continue
            if p.is_symlink() and not p.exists():
                skipped.append({"path": str(p), "error": "BrokenLink",
                                "message": f"symbolic link to {os.readlink(p)!r}, which does not exist"})
                continue
            if not p.is_file():
                continue
            if fence is not None and not is_under(os.path.realpath(p), str(fence)):
                skipped.append({"path": str(p), "error": "OutsideFolder",
                                "message": f"symbolic link to {os.path.realpath(p)!r}, outside {str(fence)!r}"})
                continue
            rel = p.relative_to(root)
            label = rel.parent.name if (label_from == "parent" and len(rel.parts) > 1) else None
            items.append(FileItem(path=str(p), label=label))
    items.sort(key=lambda it: it.path)
    return Scan(items=tuple(items), skipped=tuple(skipped))
