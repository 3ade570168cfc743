"""ESC-50 access: where the dataset is, its official metadata, and the download for online users.

The root comes from an explicit path (``--esc50 PATH``) > ``$ESC50_ROOT`` > the folder that
``audiosim datasets download esc50`` fills by default. It must hold ``meta/esc50.csv`` (the
official metadata, unchanged) and ``audio/``. Each metadata row names a ``.wav`` file; the clip
is found as ``audio/<stem>.<any supported audio extension>``, so the original Ogg release
(``audio/1-100032-A-0.ogg`` for the row ``1-100032-A-0.wav``) and the official ``.wav``
release both load.

Labels: the sub-class is ``target`` (50 classes), the super-class ``target // 10`` with the
five names in :data:`SUPER_CLASSES`.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosim.engine.audio.decode import is_audio_path
from audiosim.engine.models.weights import OFFLINE_ENV, Download, cache_dir, download, extract_zip_atomic, sha256_file
from audiosim.errors import DatasetError, DownloadError

ESC50_ENV = "ESC50_ROOT"
META = "meta/esc50.csv"
AUDIO = "audio"
COLUMNS = ("filename", "fold", "target", "category", "src_file", "take")
N_CLIPS = 2000
N_CLASSES = 50
N_FOLDS = 5
SUPER_CLASSES = (
    "animals",
    "natural soundscapes & water sounds",
    "human, non-speech sounds",
    "interior/domestic sounds",
    "exterior/urban noises",
)
# A fixed commit of the dataset's repository. GitHub builds its zips on the fly, so the archive
# bytes are not stable and cannot be pinned; the unpacked content is checked instead: the official
# metadata's sha256 and the 2000 clips it lists.
ARCHIVE_COMMIT = "33c8ce9eb2cf0b1c2f8bcf322eb349b6be34dbb6"
ARCHIVE_URL = f"https://github.com/karolpiczak/ESC-50/archive/{ARCHIVE_COMMIT}.zip"
ARCHIVE_NAME = f"ESC-50-{ARCHIVE_COMMIT}.zip"
ARCHIVE_DIR = f"ESC-50-{ARCHIVE_COMMIT}"
META_SHA256 = "ca660da60191a97de289983a05821c9382d852a38a2ba8428980816b68cf6246"


@dataclass(frozen=True)
class Esc50Clip:
    """One metadata row with the audio file that was found for it."""

    path: str
    filename: str
    fold: int
    target: int
    category: str
    super_target: int
    src_file: str
    take: str

    @property
    def super_category(self) -> str:
        return SUPER_CLASSES[self.super_target]


@dataclass(frozen=True)
class Esc50:
    """The dataset: its root and every clip, in metadata-row order."""

    root: Path
    clips: tuple[Esc50Clip, ...]

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def targets(self) -> np.ndarray:
        return np.array([c.target for c in self.clips], dtype=np.int64)

    @property
    def super_targets(self) -> np.ndarray:
        return np.array([c.super_target for c in self.clips], dtype=np.int64)

    @property
    def folds(self) -> np.ndarray:
        return np.array([c.fold for c in self.clips], dtype=np.int64)

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.clips]

    @property
    def filenames(self) -> list[str]:
        return [c.filename for c in self.clips]

    def labels(self, level: str) -> np.ndarray:
        """Integer labels for ``level`` ``"sub"`` (target) or ``"super"`` (target // 10)."""
        if level == "sub":
            return self.targets
        if level == "super":
            return self.super_targets
        raise DatasetError(f"label level must be 'sub' or 'super', got {level!r}")

    def class_names(self, level: str) -> list[str]:
        """Names indexed by label: the 50 categories (from the metadata) or the five super-classes."""
        if level == "super":
            return list(SUPER_CLASSES)
        names = {c.target: c.category for c in self.clips}
        return [names.get(t, str(t)) for t in range(max(names) + 1)]


def default_download_dir() -> Path:
    """Where ``audiosim datasets download esc50`` puts the dataset unless ``--dest`` says otherwise."""

    return cache_dir() / "datasets" / "esc50"


def _is_root(p: Path) -> bool:
    return (p / META).is_file()


def esc50_root(explicit: str | Path | None = None) -> Path:
    """The ESC-50 root: ``explicit`` > ``$ESC50_ROOT`` > the default download folder."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not _is_root(p):
            raise DatasetError(f"--esc50 {p}: no {META} there; point it at the ESC-50 root (holding meta/ and audio/)")
        return p
    env = os.environ.get(ESC50_ENV)
    if env:
        p = Path(env).expanduser()
        if not _is_root(p):
            raise DatasetError(f"{ESC50_ENV}={env}: no {META} there; point it at the ESC-50 root (holding meta/ and audio/)")
        return p
    downloaded = default_download_dir() / ARCHIVE_DIR
    if _is_root(downloaded):
        return downloaded
    raise DatasetError(
        f"ESC-50 not found: pass --esc50 PATH or set {ESC50_ENV} to the dataset root (holding {META} and audio/), "
        "or fetch it with `audiosim datasets download esc50`"
    )


def _audio_index(audio_dir: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for p in audio_dir.iterdir():
        if p.is_file() and is_audio_path(p):
            index.setdefault(p.stem, []).append(p)
    return index


def load_esc50(root: str | Path | None = None) -> Esc50:
    """Read ``meta/esc50.csv`` and find every clip's audio file (see the module docstring)."""
    base = esc50_root(root)
    audio_dir = base / AUDIO
    if not audio_dir.is_dir():
        raise DatasetError(f"{base} has no {AUDIO}/ folder; the ESC-50 root holds meta/esc50.csv and audio/")
    found = _audio_index(audio_dir)
    clips, missing = [], []
    with open(base / META, newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if absent:
            raise DatasetError(f"{base / META} lacks the columns {absent}; is it the official ESC-50 metadata?")
        for n, row in enumerate(reader, 2):
            try:
                fold, target = int(row["fold"]), int(row["target"])
            except ValueError as e:
                raise DatasetError(f"{base / META} line {n}: bad fold/target ({e})") from e
            name = row["filename"]
            candidates = found.get(Path(name).stem, [])
            if not candidates:
                missing.append(name)
                continue
            exact = [p for p in candidates if p.name == name]
            path = exact[0] if exact else sorted(candidates)[0]
            clips.append(Esc50Clip(path=str(path.resolve()), filename=name, fold=fold, target=target,
                                   category=row["category"], super_target=target // 10,
                                   src_file=row["src_file"], take=row["take"]))
    if missing:
        raise DatasetError(
            f"{len(missing)} clips named in {base / META} have no audio file in {audio_dir} "
            f"(e.g. {', '.join(missing[:3])}); the dataset copy is incomplete"
        )
    if not clips:
        raise DatasetError(f"{base / META} lists no clips")
    return Esc50(root=base, clips=tuple(clips))


def download_esc50(dest: str | Path | None = None, *, progress: bool = True) -> tuple[Path, str]:
    """Download the dataset's repository at a fixed commit, check its content and unpack it atomically.

    Returns ``(root, sha256 of the received archive)``. The transfer resumes from a partial
    file; the archive is unpacked into a temporary folder, checked (``meta/esc50.csv`` must have
    the official sha256 and every listed clip must be there) and only then renamed into place.
    """


    dest = Path(dest).expanduser() if dest is not None else default_download_dir()
    root = dest / ARCHIVE_DIR
    if _is_root(root) and (root / AUDIO).is_dir():
        return root, ""
    if os.environ.get(OFFLINE_ENV, "") in ("1", "true", "yes"):
        raise DatasetError(f"{OFFLINE_ENV}=1 forbids downloads, so ESC-50 cannot be fetched; pass --esc50 PATH or set "
                           f"{ESC50_ENV} to a copy of the dataset")
    try:
        # unpinned on purpose: GitHub's zip bytes change; the content is verified below
        archive = download(Download(url=ARCHIVE_URL, filename=ARCHIVE_NAME), dest, progress=progress, allow_unpinned=True)
        digest = sha256_file(archive)
        staging = extract_zip_atomic(archive, dest / f".{ARCHIVE_DIR}.unpacked")
    except DownloadError as e:
        raise DatasetError(
            f"could not download ESC-50 ({e}). Without network access, fetch {ARCHIVE_URL} elsewhere, unpack it "
            f"and pass --esc50 PATH or set {ESC50_ENV} to the unpacked {ARCHIVE_DIR} folder"
        ) from e
    try:
        inner = staging / ARCHIVE_DIR
        if not _is_root(inner):
            raise DatasetError(f"the archive (sha256 {digest}) holds no {ARCHIVE_DIR}/{META}; it is not ESC-50")
        from audiosim.files import sha256_file as sha

        if sha(inner / META) != META_SHA256:
            raise DatasetError(f"{ARCHIVE_DIR}/{META} in the received archive is not the official metadata (sha256 "
                               f"{sha(inner / META)}, expected {META_SHA256}); delete {archive} and run again")
        load_esc50(inner)  # every listed clip is present
        os.replace(inner, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink()
    return root, digest
