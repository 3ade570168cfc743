"""Read the DCASE Task 2 development-set layouts: 2020 (machine IDs) and 2021-2024 (sections, domains, attributes).

* 2020: ``<machine>/{train,test}/{normal,anomaly}_id_XX_*.wav``;
* 2021-2024: ``<machine>/{train,test}/section_XX_{source,target}_{train,test}_{normal,anomaly}_NNNN[_attrs].wav``,
  with ``<machine>/attributes_XX.csv`` (``file_name,d1p,d1v,...``) where the year has them (2022-2024);
  attributes are taken from the CSV, else from ``key_value`` pairs in the name.

``DATASET`` may also be one machine folder. A 2020 clip's section is its ID and its domain ``source``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from audiosim.engine.audio.decode import is_audio_path
from audiosim.errors import DatasetError
from audiosim.eval.asd_stats import TestClip

ID_RE = re.compile(r"^(normal|anomaly)_id_([0-9A-Za-z]+)_", re.IGNORECASE)
SECTION_RE = re.compile(r"^section_([0-9A-Za-z]+)_(source|target)_(train|test)_(normal|anomaly)_([0-9]+)(?:_(.*))?\.[^.]+$",
                        re.IGNORECASE)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class AsdClip:
    path: str
    machine: str
    split: str
    section: str
    domain: str
    anomalous: bool
    attributes: dict = field(default_factory=dict, compare=False, hash=False)

    def test_clip(self) -> TestClip:
        return TestClip(machine=self.machine, section=self.section, domain=self.domain, anomalous=self.anomalous)


@dataclass(frozen=True)
class AsdDataset:
    root: str
    style: str  # "2020" (IDs) or "sections" (2021-2024)
    clips: tuple[AsdClip, ...]
    has_attribute_csv: bool = False

    @property
    def guessed_year(self) -> int:
        if self.style == "2020":
            return 2020
        return 2022 if self.has_attribute_csv or any(c.attributes for c in self.clips) else 2021

    def train(self) -> list[AsdClip]:
        return [c for c in self.clips if c.split == "train"]

    def test(self) -> list[AsdClip]:
        return [c for c in self.clips if c.split == "test"]


def _machine_dirs(root: Path) -> list[Path]:
    if any((root / s).is_dir() for s in SPLITS):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and any((p / s).is_dir() for s in SPLITS))


def _name_attributes(rest: str | None) -> dict:
    if not rest:
        return {}
    parts = rest.split("_")
    if len(parts) % 2:
        return {"attributes": rest}
    return {parts[i]: parts[i + 1] for i in range(0, len(parts), 2)}


def _csv_attributes(mdir: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for f in sorted(mdir.glob("attributes_*.csv")):
        try:
            with open(f, newline="") as fh:
                for row in csv.DictReader(fh):
                    name = Path(row.get("file_name") or "").name
                    keys = sorted(k for k in row if k and k.startswith("d") and k.endswith("p"))
                    out[name] = {row[k]: row.get(k[:-1] + "v", "") for k in keys if row.get(k)}
        except (OSError, csv.Error, UnicodeDecodeError) as e:
            raise DatasetError(f"{f}: unreadable attribute table ({e}); fix or remove it") from None
    return out


def read_dcase(root: str | Path) -> AsdDataset:
    """Every labelled clip of a DCASE-layout folder (2020 or 2021-2024 naming; one style per dataset)."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{root} is not a folder; pass the dataset root holding <machine>/train and <machine>/test")
    clips, styles, has_csv = [], set(), False
    for mdir in _machine_dirs(base):
        attrs = _csv_attributes(mdir)
        has_csv = has_csv or bool(attrs)
        for split in SPLITS:
            d = mdir / split
            if not d.is_dir():
                continue
            for p in sorted(d.iterdir()):
                if not (p.is_file() and is_audio_path(p)):
                    continue
                m2, m = SECTION_RE.match(p.name), ID_RE.match(p.name)
                if m2:
                    styles.add("sections")
                    anomalous = m2.group(4).lower() == "anomaly"
                    clip = AsdClip(path=str(p.resolve()), machine=mdir.name, split=split, section=m2.group(1),
                                   domain=m2.group(2).lower(), anomalous=anomalous,
                                   attributes=attrs.get(p.name) or _name_attributes(m2.group(6)))
                elif m:
                    styles.add("2020")
                    anomalous = m.group(1).lower() == "anomaly"
                    clip = AsdClip(path=str(p.resolve()), machine=mdir.name, split=split, section=m.group(2),
                                   domain="source", anomalous=anomalous)
                else:
                    continue
                if split == "train" and anomalous:
                    raise DatasetError(f"{p}: an anomalous clip in train/; training uses normal clips only")
                clips.append(clip)
    if not clips:
        raise DatasetError(f"no DCASE clips under {root}: expected <machine>/train/normal_id_XX_*.wav (2020) or "
                           "<machine>/train/section_XX_source_train_normal_*.wav (2021-2024)")
    if len(styles) > 1:
        raise DatasetError(f"{root} mixes 2020 (normal_id_XX) and 2021-2024 (section_XX) file names; "
                           "evaluate them as separate datasets")
    return AsdDataset(root=str(base.resolve()), style=styles.pop(), clips=tuple(clips), has_attribute_csv=has_csv)


def section_of(path: str | Path) -> str | None:
    """The machine ID (2020) or section (2021-2024) in a DCASE file name, else None."""
    name = Path(path).name
    m2, m = SECTION_RE.match(name), ID_RE.match(name)
    return m2.group(1) if m2 else (m.group(2) if m else None)
