"""Where model weights come from, and the download that fetches them for online users.

Resolution order for every model: an explicit path (``--weights PATH``) >
``$AUDIOSIM_MODELS/<model>/`` > the user cache (``$AUDIOSIM_CACHE`` or
``~/.cache/audiosim``) ``/<model>/`` > a download of the official file into that cache.
Nothing here runs at import time.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from audiosim.errors import DownloadError, WeightsNotFoundError
from audiosim.files import digests as _digests, sha256_file  # noqa: F401 (sha256_file is part of this module's API)

MODELS_ENV = "AUDIOSIM_MODELS"
CACHE_ENV = "AUDIOSIM_CACHE"
OFFLINE_ENV = "AUDIOSIM_OFFLINE"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    """An official file to fetch: where from, what to call it, and what it must hash to.

    ``md5`` is for files whose publisher only lists an MD5 (e.g. Zenodo records).
    """

    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    md5: str | None = None


def cache_dir() -> Path:
    """The user cache root (not created)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "audiosim"


def sha256_tree(path: str | Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def is_saved_model_dir(path: str | Path) -> bool:
    """True for a TensorFlow SavedModel directory (holds ``saved_model.pb``)."""
    p = Path(path)
    return p.is_dir() and (p / "saved_model.pb").exists()


def candidate_dirs(model: str) -> list[tuple[str, Path]]:
    """The local places searched for ``model``, in order, with a label for error messages."""
    out = []
    env = os.environ.get(MODELS_ENV)
    if env:
        out.append((f"${MODELS_ENV}/{model}", Path(env).expanduser() / model))
    out.append(("user cache", cache_dir() / model))
    return out


def find_local(model: str, names: Sequence[str]) -> Path | None:
    """First existing ``<dir>/<name>`` over the candidate dirs and names."""
    for _, d in candidate_dirs(model):
        for name in names:
            p = d / name
            if p.exists():
                return p
    return None


def download(spec: Download, dest_dir: str | Path, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Fetch ``spec.url`` into ``dest_dir/spec.filename``; resumable, verified, atomic.

    Bytes land in ``<filename>.part``; an interrupted transfer resumes from it with an HTTP
    Range request. The finished file is checked against ``spec.size`` and ``spec.sha256``;
    on mismatch the partial file is deleted and :class:`DownloadError` raised, so the cache
    never holds a bad file under the final name.
    """
    from tqdm.auto import tqdm

    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / spec.filename
    part = dest_dir / (spec.filename + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(spec.url, headers={"User-Agent": "audiosim"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the part file is complete
            response = None
        else:
            raise DownloadError(f"download of {spec.url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"download of {spec.url} failed: {e}") from e
    if response is not None:
        with response:
            resumed = have and response.status == 206
            if not resumed:
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else spec.size
            with open(part, "ab" if resumed else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=spec.filename, disable=not progress
            ) as bar:
                try:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
                except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                    raise DownloadError(
                        f"download of {spec.url} interrupted after {f.tell()} bytes: {e}; run again to resume"
                    ) from e
                received = f.tell()
            if length is not None and received < total:  # the server closed the connection early
                raise DownloadError(
                    f"download of {spec.url} interrupted after {received} of {total} bytes; run again to resume"
                )
    size = part.stat().st_size
    if spec.size is not None and size != spec.size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{spec.url}: received {size} bytes, expected {spec.size}; the partial file was removed")
    wanted = {a: v.lower() for a, v in (("sha256", spec.sha256), ("md5", spec.md5)) if v}
    if wanted:
        digests = _digests(part, tuple(wanted))
        for algorithm, expected in wanted.items():
            if digests[algorithm] != expected:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"{spec.url}: {algorithm} {digests[algorithm]} does not match the expected {expected}; "
                    "the file was removed"
                )
    os.replace(part, final)
    return final


def not_found_message(model: str, *, names: Sequence[str], option: str = "--weights PATH") -> str:
    where = "; ".join(f"{label}: {d}" for label, d in candidate_dirs(model))
    return (
        f"{model} weights not found (looked for {', '.join(names)} in {where}) and they could not be downloaded. "
        f"Pass {option}, or set {MODELS_ENV} to a folder containing {model}/, or go online once so audiosim "
        f"can download them into {cache_dir() / model}, or use the weight-free baseline with --embedder logmel."
    )


def resolve_or_download(
    model: str,
    *,
    names: Sequence[str],
    downloads: Sequence[Download] = (),
    allow_download: bool | None = None,
    progress: bool = True,
) -> Path:
    """Find ``model``'s weights locally, else download the official file into the cache."""
    local = find_local(model, names)
    if local is not None:
        return local
    if allow_download is None:
        allow_download = os.environ.get(OFFLINE_ENV, "") not in ("1", "true", "yes")
    errors = []
    if allow_download:
        for spec in downloads:
            try:
                return download(spec, cache_dir() / model, progress=progress)
            except DownloadError as e:
                errors.append(str(e))
    message = not_found_message(model, names=names)
    if errors:
        message += " Download attempts: " + " | ".join(errors)
    raise WeightsNotFoundError(message)
