"""Labels for the files of an ingest run, from a CSV table matched by file name without extension."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from audiosim.errors import AudiosimError


def labels_from_csv(items: Sequence, csv_path: str | Path, *, label_column: str = "label") -> list:
    """Relabel ``items`` from a CSV with a file column (``path``, ``filename`` or ``file``) and ``label_column``.

    Rows match a file by its name without extension (so ``dog.wav`` rows label ``dog.ogg``
    files); files without a row keep their current label.
    """
    import csv

    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        key = next((c for c in ("path", "filename", "file") if c in cols), None)
        if key is None or label_column not in cols:
            raise AudiosimError(
                f"{csv_path} needs a path/filename/file column and a {label_column!r} column; it has {cols}"
            )
        table = {Path(row[key]).stem: row[label_column] for row in reader}
    from dataclasses import replace

    return [replace(it, label=table.get(Path(it.path).stem, it.label)) for it in items]
