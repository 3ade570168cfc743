"""Labels for the files of an ingest run, from a CSV table matched by file name without extension.

The table needs a file column (``path``, ``filename`` or ``file``, first found wins) and a label
column (``label`` by default). A row labels every file whose name without extension equals the
stem of its file cell (so ``dog.wav`` rows label ``dog.ogg`` files, and ``audio/dog.wav`` works
too); files without a row keep their current label.

The table is read strictly, and every way it can silently do nothing is an error
(:class:`LabelCsvError`, naming the file and the fix):

* not UTF-8 (a UTF-8 byte-order mark, as spreadsheets write it, is fine): the offending byte,
  line and the encoding to use;
* malformed CSV (an unclosed quote, text after a closing quote, a row with more or fewer cells
  than the header): the line;
* no file or label column, or no data rows;
* rows that give one file stem different labels (which one was meant is unknowable);
* a table that matches none of the files.

Tolerated and reported in :class:`LabelReport`: rows for files that are not in the run, empty
label cells (the row is ignored), repeated rows for one stem with the same label. Label cells
are stripped of surrounding whitespace. The header may use ``;``, tab or ``|`` instead of commas
(spreadsheets in many locales write ``;``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from audiosim.errors import LabelCsvError

KEY_COLUMNS = ("path", "filename", "file")
DELIMITERS = (",", ";", "\t", "|")
EXAMPLES = 5


@dataclass(frozen=True)
class LabelTable:
    """A parsed labels CSV: ``labels`` maps a file stem to its label."""

    path: str
    key_column: str
    label_column: str
    rows: int
    labels: Mapping[str, str]
    empty_labels: int  # rows with an empty label cell (ignored)
    duplicate_stems: tuple[str, ...]  # stems on more than one row (all with the same label)


@dataclass(frozen=True)
class LabelReport:
    """What applying a labels CSV did; :meth:`summary` is one line for the CLI."""

    csv: str
    key_column: str
    label_column: str
    rows: int  # data rows in the table
    files: int  # files offered
    matched: int  # files with a row (and a non-empty label)
    changed: int  # files whose CSV label differs from the label the folder gave them
    unmatched_rows: int  # labelled stems that match no file
    empty_labels: int
    duplicate_stems: tuple[str, ...]
    unmatched_examples: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["duplicate_stems"] = list(self.duplicate_stems)
        d["unmatched_examples"] = list(self.unmatched_examples)
        return d

    def summary(self) -> str:
        """One line: what the table matched. (Which stored labels changed is the run summary's "relabelled" count.)"""
        parts = [f"labels from {self.csv} (column {self.label_column!r}): {self.matched} of {self.files} files matched"]
        if self.unmatched_rows:
            n = self.unmatched_rows
            parts.append(f"{n} labelled {'name matches' if n == 1 else 'names match'} no file "
                         f"(e.g. {', '.join(self.unmatched_examples)})")
        if self.empty_labels:
            parts.append(f"{self.empty_labels} {'row' if self.empty_labels == 1 else 'rows'} with an empty label ignored")
        if self.duplicate_stems:
            n = len(self.duplicate_stems)
            parts.append(f"{n} {'name' if n == 1 else 'names'} on several rows (e.g. "
                         f"{', '.join(self.duplicate_stems[:EXAMPLES])})")
        return "; ".join(parts)


LABEL_FROM = ("parent", "none")


@dataclass(frozen=True)
class LabelSource:
    """How one folder's files are labelled: by ``label_from`` (``parent``: the parent folder's name, or
    ``none``), then by a labels ``csv``'s ``column`` when there is one.

    A collection records the source of each folder it indexes (the manifest's ``label_sources``), so
    a later ``index`` run of that folder labels new files the same way without being told again.
    """

    label_from: str = "parent"
    csv: str | None = None
    column: str = "label"

    def __post_init__(self) -> None:
        if self.label_from not in LABEL_FROM:
            raise LabelCsvError(f"label_from must be one of {LABEL_FROM}, got {self.label_from!r}")

    def to_dict(self) -> dict:
        return {"label_from": self.label_from, "csv": self.csv, "column": self.column}

    @classmethod
    def resolve(cls, stored: dict | None, *, label_from: str | None, csv: str | Path | None,
                column: str = "label") -> "LabelSource":
        """The source of this run: what is given, else what the folder's earlier runs recorded, else ``parent``.

        ``csv`` given: that table and ``column``. Not given: the recorded table (and its column),
        which must still be readable.
        """
        stored = stored or {}
        frm = label_from if label_from is not None else stored.get("label_from", "parent")
        if csv is not None:
            return cls(label_from=frm, csv=str(Path(csv).expanduser().resolve()), column=column)
        kept = stored.get("csv")
        if kept is not None and not Path(kept).is_file():
            raise LabelCsvError(
                f"this folder's files were labelled from {kept} (column {stored.get('column', 'label')!r}), recorded by "
                "an earlier `audiosim index --labels`, and that file is gone; pass --labels PATH to use it from its "
                "new place (or another table)")
        return cls(label_from=frm, csv=kept, column=stored.get("column", "label") if kept else column)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LabelCsvError(
            f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}); save it as UTF-8 "
            f"(in a spreadsheet: 'CSV UTF-8'), or convert it, e.g. iconv -f latin1 -t utf-8 {path.name} > utf8.csv"
        ) from None


def _delimiter(header: str) -> str:
    return next((d for d in DELIMITERS if d in header), ",")


def read_label_table(csv_path: str | Path, *, label_column: str = "label") -> LabelTable:
    """Parse and check a labels CSV (see the module docstring for what is refused)."""
    path = Path(csv_path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LabelCsvError(f"cannot read the labels CSV {path}: {e.strerror or e}") from e
    text = _decode(path, data)
    lines = text.splitlines()
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(lines[0] if lines else ""), strict=True)
    try:
        header = [c.strip() for c in next(reader, [])]
        key = next((c for c in KEY_COLUMNS if c in header), None)
        if key is None or label_column not in header:
            raise LabelCsvError(
                f"{path} needs a path/filename/file column and a {label_column!r} column; it has {header} "
                "(pass --label-column NAME for another label column)"
            )
        ki, li = header.index(key), header.index(label_column)
        labels: dict[str, str] = {}
        seen: dict[str, list[str]] = {}
        rows = empty = 0
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                raise LabelCsvError(
                    f"{path}: malformed CSV at line {reader.line_num}: {len(row)} cells, the header has {len(header)}; "
                    "quote cells that contain the separator and give every row the header's columns"
                )
            rows += 1
            stem, label = Path(row[ki].strip()).stem, row[li].strip()
            if not stem:
                continue
            if not label:
                empty += 1
                continue
            seen.setdefault(stem, []).append(label)
            labels[stem] = label
    except csv.Error as e:
        raise LabelCsvError(
            f"{path}: malformed CSV at line {reader.line_num}: {e} (an unclosed or stray quote?); fix the quoting"
        ) from None
    if rows == 0:
        raise LabelCsvError(f"{path} has a header but no rows; add one row per file: <file>,<label>")
    conflicts = sorted(s for s, ls in seen.items() if len(set(ls)) > 1)
    if conflicts:
        shown = "; ".join(f"{s} ({', '.join(sorted(set(seen[s])))})" for s in conflicts[:EXAMPLES])
        raise LabelCsvError(f"{path} gives {len(conflicts)} file names different labels on different rows: {shown}; "
                            "keep one label per file")
    return LabelTable(path=str(path), key_column=key, label_column=label_column, rows=rows, labels=labels,
                      empty_labels=empty, duplicate_stems=tuple(sorted(s for s, ls in seen.items() if len(ls) > 1)))


def apply_label_table(items: Sequence, table: LabelTable) -> tuple[list, LabelReport]:
    """``(relabelled items, report)``; items are dataclasses with ``path`` and ``label`` fields."""
    stems = [Path(it.path).stem for it in items]
    out = [replace(it, label=table.labels[s]) if s in table.labels else it for it, s in zip(items, stems)]
    present = set(stems)
    unmatched = sorted(s for s in table.labels if s not in present)
    matched = sum(s in table.labels for s in stems)
    if items and matched == 0:
        example = Path(items[0].path).name
        raise LabelCsvError(
            f"{table.path} labels none of the {len(items)} files: no {table.key_column!r} cell matches a file name "
            f"without extension (e.g. the table names {', '.join(unmatched[:3]) or 'nothing'}; a file is {example}); "
            "check the table belongs to this folder"
        )
    report = LabelReport(csv=table.path, key_column=table.key_column, label_column=table.label_column,
                         rows=table.rows, files=len(items), matched=matched,
                         changed=sum(a.label != b.label for a, b in zip(items, out)), unmatched_rows=len(unmatched),
                         empty_labels=table.empty_labels, duplicate_stems=table.duplicate_stems,
                         unmatched_examples=tuple(unmatched[:EXAMPLES]))
    return out, report


def relabel_from_csv(items: Sequence, csv_path: str | Path, *, label_column: str = "label") -> tuple[list, LabelReport]:
    """Read ``csv_path`` and apply it to ``items``: ``(relabelled items, report)``."""
    return apply_label_table(items, read_label_table(csv_path, label_column=label_column))


def labels_from_csv(items: Sequence, csv_path: str | Path, *, label_column: str = "label") -> list:
    """The relabelled ``items`` only (see :func:`relabel_from_csv` for the report)."""
    return relabel_from_csv(items, csv_path, label_column=label_column)[0]
