"""Where model weights come from, and the verified download that fetches them for online users.

Resolution order for every model: an explicit path (``--weights PATH``) >
``$AUDIOSIM_MODELS/<model>/`` > the user cache (``$AUDIOSIM_CACHE`` or
``~/.cache/audiosim``) ``/<model>/`` > a download of the official file into that cache.
Nothing here runs at import time.

**Every download is pinned.** :data:`PINNED` holds the sha256 (and size where published) of
each official file audiosim downloads, keyed by URL; :func:`download` fills a
:class:`Download` that names no sha256 from it. A file with no pinned sha256 is refused
(:class:`DownloadError`) unless the caller passes the expected value (``Download(sha256=...)``)
or opts out explicitly (``allow_unpinned=True`` or ``$AUDIOSIM_ALLOW_UNPINNED=1``). An MD5 is
checked when given but does not count as a pin (MD5 collisions are cheap to make).

**Resume only from the same bytes.** Bytes land in ``<filename>.part``; beside it
``<filename>.part.json`` records the URL, expected sha256 and size, and the server's
``ETag``/``Last-Modified``/total length for that transfer. A later run resumes with an HTTP
``Range`` request only when that record matches, and sends ``If-Range`` so that a server whose
file changed answers with the whole new file (200) instead of a splice. A ``.part`` without a
matching record, a ``206`` whose ``Content-Range`` does not start where the part ends or names
another total, or a ``416`` for another length all restart from zero. Should a resumed file still
fail its checksum, the part is deleted and the download restarts once from zero in the same call.

**Failures leave no debris.** A failed local write (full disk, any ``OSError``) deletes the
part and its record; a checksum or size mismatch deletes them too; only a dropped connection
keeps them, for the next run to resume. The finished file is renamed into place atomically.

:func:`extract_tar_atomic` (and :func:`extract_zip_atomic`) unpack an archive into a temporary folder
beside the destination (``filter="data"``: no absolute paths, links out of the tree or device
files) and rename it into place, so a reader never sees half an extraction and a failed one
leaves nothing behind.

Pins and where their values were published (none could be computed here: no network):

* YAMNet TF-Hub ``google/yamnet/1`` compressed SavedModel: 14 242 921 bytes, sha256
  ``b80da2a1...`` -- pinned with the same size by several independent projects, which also pin
  its ``saved_model.pb`` as ``672af6e1...`` (equal to a Hugging Face LFS pointer of that file).
* VGGish ``vggish_model.ckpt``: sha256 ``0962b191...`` -- pinned by two independent projects,
  one of which pins the PCA file below with the value audiosim already verified; size not
  published there, so not checked.
* VGGish ``vggish_pca_params.npz``: 73 020 bytes, ``4d878af3...`` (verified on the shared copy).
* PANNs ``Cnn14_mAP=0.431.pth``: 327 428 481 bytes, ``0dc499e4...`` -- a Hugging Face LFS pointer
  and several projects; Zenodo's MD5 ``541141fa...`` is checked as well.
* PANNs ``Cnn14_16k_mAP=0.438.pth``: 358 668 570 bytes, ``e2ee543a...`` -- several projects, one
  noting that its copy matched Zenodo's MD5 ``362fc5ff...`` (checked as well).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import uuid
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from audiosim.errors import DownloadError, DownloadStorageError, WeightsFormatError, WeightsNotFoundError
from audiosim.files import digests as _digests  # sha256_file is part of this API
from audiosim.files import sha256_file, write_json_atomic

MODELS_ENV = "AUDIOSIM_MODELS"
CACHE_ENV = "AUDIOSIM_CACHE"
OFFLINE_ENV = "AUDIOSIM_OFFLINE"
ALLOW_UNPINNED_ENV = "AUDIOSIM_ALLOW_UNPINNED"
CHUNK = 1 << 20
PART_SUFFIX = ".part"
RECORD_SUFFIX = ".part.json"

__all__ = [
    "PINNED",
    "Download",
    "Pin",
    "cache_dir",
    "candidate_dirs",
    "download",
    "extract_tar_atomic",
    "extract_zip_atomic",
    "find_local",
    "is_saved_model_dir",
    "not_found_message",
    "pinned",
    "resolve_or_download",
    "resolve_tf_weights",
    "search_tf_weights",
    "sha256_file",
    "sha256_tree",
    "without_baseline_hint",
]


@dataclass(frozen=True)
class Download:
    """An official file to fetch: where from, what to call it, and what it must hash to.

    ``md5`` is for files whose publisher lists an MD5 (e.g. Zenodo records); it is checked in
    addition to ``sha256`` but is not a pin on its own.
    """

    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    md5: str | None = None


@dataclass(frozen=True)
class Pin:
    """The published identity of an official file."""

    sha256: str
    size: int | None = None
    md5: str | None = None


YAMNET_HUB_URL = "https://tfhub.dev/google/yamnet/1?tf-hub-format=compressed"
VGGISH_CKPT_URL = "https://storage.googleapis.com/audioset/vggish_model.ckpt"
VGGISH_PCA_URL = "https://storage.googleapis.com/audioset/vggish_pca_params.npz"
PANNS_CNN14_URL = "https://zenodo.org/records/3987831/files/Cnn14_mAP%3D0.431.pth?download=1"
PANNS_CNN14_16K_URL = "https://zenodo.org/records/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1"

#: URL -> published identity of every file audiosim downloads (see the module docstring for sources).
PINNED = MappingProxyType({
    YAMNET_HUB_URL: Pin(sha256="b80da2a1a56926fb0767205051a200dd7b3beaf3ea1ea126c42a53943996e5e0", size=14_242_921),
    VGGISH_CKPT_URL: Pin(sha256="0962b1914e3e053922d957c45bc84a78c985765641dc6bceeeb3a7d8dfecfdf6"),
    VGGISH_PCA_URL: Pin(sha256="4d878af3e306defbfb37095365aa7e5a6cecb86bad13e859e626151c4e6a8b9d", size=73_020),
    PANNS_CNN14_URL: Pin(sha256="0dc499e40e9761ef5ea061ffc77697697f277f6a960894903df3ada000e34b31",
                         size=327_428_481, md5="541141fa2ee191a88f24a3219fff024e"),
    PANNS_CNN14_16K_URL: Pin(sha256="e2ee543a27919542c2ea03eabaa70b24dcd4e6c8e05621de6b67a94e4c5058e6",
                             size=358_668_570, md5="362fc5ff18f1d6ad2f6d464b45893f2c"),
})


def pinned(spec: Download) -> Download:
    """``spec`` with the sha256, size and MD5 of :data:`PINNED` filled in where it names none."""
    pin = PINNED.get(spec.url)
    if pin is None:
        return spec
    return replace(spec, sha256=spec.sha256 or pin.sha256, size=spec.size if spec.size is not None else pin.size,
                   md5=spec.md5 or pin.md5)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


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
        base = Path(env).expanduser()
        out.append((f"${MODELS_ENV}/{model}", base / model))
        if base.name == model and not (base / model).is_dir():  # pointed at the model's own folder
            out.append((f"${MODELS_ENV}", base))
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


# ---------------------------------------------------------------------- download
def _discard(*paths: Path) -> None:
    """Remove what a failed download left, as far as the disk allows (the error being reported matters more)."""
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def _close_quietly(f) -> None:
    """Close a file whose write failed: closing flushes the buffer again, which fails again on a full disk."""
    try:
        f.close()
    except OSError:
        pass


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``(first byte, total)`` of a ``Content-Range`` header (None where absent or ``*``)."""
    m = re.fullmatch(r"\s*bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    return (None if m.group(1) == "*" else int(m.group(1))), (None if m.group(2) == "*" else int(m.group(2)))


def _validator(record: dict) -> str | None:
    """The ``If-Range`` value for a recorded transfer: a strong ETag, else Last-Modified."""
    etag = record.get("etag")
    if isinstance(etag, str) and etag and not etag.startswith("W/"):
        return etag
    modified = record.get("last_modified")
    return modified if isinstance(modified, str) and modified else None


class _Restart(Exception):
    """The part file cannot be resumed; fetch the whole file again."""


def _open(spec: Download, have: int, record: dict | None, timeout: float):
    request = urllib.request.Request(spec.url, headers={"User-Agent": "audiosim"})
    if have:
        request.add_header("Range", f"bytes={have}-")
        validator = _validator(record or {})
        if validator:
            request.add_header("If-Range", validator)
    try:
        return urllib.request.urlopen(request, timeout=timeout), None
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return None, e
        raise DownloadError(f"download of {spec.url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"download of {spec.url} failed: {e}") from e


def _transfer(spec: Download, part: Path, record_path: Path, *, progress: bool, timeout: float) -> bool:
    """Bring ``part`` to the server's full file; return True when it resumed earlier bytes."""
    from tqdm.auto import tqdm

    record = _read_record(record_path) if part.exists() else None
    have = part.stat().st_size if part.exists() else 0
    resumable = (record is not None and record.get("url") == spec.url and record.get("sha256") == spec.sha256
                 and (record.get("total") is None or have <= int(record["total"])))
    if have and not resumable:
        _discard(part, record_path)
        have, record = 0, None
    response, http_error = _open(spec, have, record, timeout)
    if response is None:  # 416: the part already holds the whole file, or it is from a file of another length
        _, total = _content_range(http_error.headers.get("Content-Range") if http_error.headers else None)
        http_error.close()
        if total is not None and total == have and (record or {}).get("total") in (None, total):
            return True
        raise _Restart(f"the server answered 416 for {have} bytes of a {total}-byte file")
    with response:
        headers = response.headers
        length = headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        if have and response.status == 206:
            first, total = _content_range(headers.get("Content-Range"))
            if first != have or (total is not None and record.get("total") not in (None, total)):
                raise _Restart(f"the server resumed at byte {first} of {total}, not at {have} of {record.get('total')}")
            resumed = True
        else:
            resumed, have = False, 0
            total = length
            record = {"url": spec.url, "sha256": spec.sha256, "size": spec.size, "total": total,
                      "etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")}
            try:
                write_json_atomic(record_path, record)
            except OSError as e:
                _discard(part, record_path)
                raise DownloadStorageError(f"cannot write {record_path}: {e}; free disk space or fix permissions") from e
        expected = have + length if length is not None else (record.get("total") or spec.size)
        try:
            f = open(part, "ab" if resumed else "wb")
        except OSError as e:
            _discard(part, record_path)
            raise DownloadStorageError(f"cannot write {part}: {e}; free disk space or fix permissions") from e
        with f, tqdm(total=expected, initial=have, unit="B", unit_scale=True, desc=spec.filename,
                     disable=not progress) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                    raise DownloadError(
                        f"download of {spec.url} interrupted after {f.tell()} bytes: {e}; run again to resume"
                    ) from e
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as e:
                    _close_quietly(f)
                    _discard(part, record_path)
                    raise DownloadStorageError(
                        f"cannot write {part}: {e}; the partial file was removed (free disk space and run again)"
                    ) from e
                bar.update(len(chunk))
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                _close_quietly(f)
                _discard(part, record_path)
                raise DownloadStorageError(f"cannot write {part}: {e}; the partial file was removed (free disk space "
                                    "and run again)") from e
            received = f.tell()
    if length is not None and received < expected:  # the server closed the connection early
        raise DownloadError(
            f"download of {spec.url} interrupted after {received} of {expected} bytes; run again to resume"
        )
    return resumed


def _verify(spec: Download, part: Path) -> str | None:
    """None when ``part`` matches ``spec``'s size and digests, else what is wrong."""
    size = part.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"received {size} bytes, expected {spec.size}"
    wanted = {a: v.lower() for a, v in (("sha256", spec.sha256), ("md5", spec.md5)) if v}
    if wanted:
        digests = _digests(part, tuple(wanted))
        for algorithm, expected in wanted.items():
            if digests[algorithm] != expected:
                return f"{algorithm} {digests[algorithm]} does not match the expected {expected}"
    return None


def download(spec: Download, dest_dir: str | Path, *, progress: bool = True, timeout: float = 60.0,
             allow_unpinned: bool | None = None) -> Path:
    """Fetch ``spec.url`` into ``dest_dir/spec.filename``: pinned, resumable from the same bytes only, atomic.

    See the module docstring. ``allow_unpinned`` (default: ``$AUDIOSIM_ALLOW_UNPINNED``) accepts a
    file with no expected sha256; otherwise such a download raises :class:`DownloadError` before
    any request is made.
    """
    spec = pinned(spec)
    if allow_unpinned is None:
        allow_unpinned = _env_flag(ALLOW_UNPINNED_ENV)
    if not spec.sha256 and not allow_unpinned:
        raise DownloadError(
            f"{spec.url} has no pinned sha256, so its content could not be verified; pass the expected sha256 "
            f"(Download(..., sha256=HEX)), or accept an unverified file with allow_unpinned=True "
            f"(or {ALLOW_UNPINNED_ENV}=1)"
        )
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {dest_dir}: {e}") from e
    final = dest_dir / spec.filename
    part = dest_dir / (spec.filename + PART_SUFFIX)
    record_path = dest_dir / (spec.filename + RECORD_SUFFIX)
    restarted = False
    while True:
        try:
            resumed = _transfer(spec, part, record_path, progress=progress, timeout=timeout)
        except _Restart as e:
            _discard(part, record_path)
            if restarted:
                raise DownloadError(f"{spec.url}: the server will not send a consistent file ({e}); run again later") from e
            restarted = True
            continue
        try:
            problem = _verify(spec, part)
            if problem is None:
                os.replace(part, final)
                _discard(record_path)
                return final
        except OSError as e:  # reading back or renaming the finished file
            _discard(part, record_path)
            raise DownloadStorageError(f"cannot finish {final}: {e}; the partial file was removed (free disk space "
                                       "or fix permissions, and run again)") from e
        _discard(part, record_path)
        if not resumed or restarted:
            what = "the partial file was removed" if problem.startswith("received") else "the file was removed"
            raise DownloadError(f"{spec.url}: {problem}; {what}")
        restarted = True  # a resumed file that fails its checksum: the old bytes were wrong, fetch it whole


def _unpack_atomic(archive: Path, dest: Path, unpack) -> Path:
    """Run ``unpack(tmp)`` into a temporary folder beside ``dest``, then rename it to ``dest``."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    except OSError as e:
        raise DownloadError(f"cannot unpack {archive} beside {dest}: {e}") from e
    try:
        unpack(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.exists():
                raise
            old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.old")
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = " ".join(str(e).split())  # tarfile's "could not be opened" spans several lines
        raise DownloadError(f"cannot unpack {archive} into {dest}: {reason}; delete {archive} and run again "
                            "(a damaged download is fetched anew)") from e
    return dest


def extract_tar_atomic(archive: str | Path, dest: str | Path) -> Path:
    """Unpack ``archive`` (tar, tar.gz, ...) as the folder ``dest``, atomically; return ``dest``.

    Members are extracted with ``filter="data"`` into a temporary folder beside ``dest``, which is
    then renamed to ``dest`` (an existing ``dest`` is replaced). On any failure the temporary
    folder is removed, ``dest`` is left as it was and :class:`DownloadError` names the fix.
    """
    def unpack(tmp: Path) -> None:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")

    return _unpack_atomic(Path(archive), Path(dest), unpack)


def extract_zip_atomic(archive: str | Path, dest: str | Path) -> Path:
    """:func:`extract_tar_atomic` for a zip archive (``zipfile`` drops absolute and ``..`` member paths)."""
    def unpack(tmp: Path) -> None:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)

    return _unpack_atomic(Path(archive), Path(dest), unpack)


BASELINE_HINT = ", or use the weight-free baseline with --embedder logmel"


def not_found_message(model: str, *, names: Sequence[str], option: str = "--weights PATH") -> str:
    """Where ``model``'s weights were looked for and every way to provide them.

    The last way, :data:`BASELINE_HINT`, fits commands that choose an embedder (``index``,
    ``bench``); :func:`without_baseline_hint` drops it for those that cannot (``query``).
    """
    where = "; ".join(f"{label}: {d}" for label, d in candidate_dirs(model))
    return (
        f"{model} weights not found (looked for {', '.join(names)} in {where}) and they could not be downloaded. "
        f"Pass {option}, or set {MODELS_ENV} to a folder containing {model}/ (or to that {model}/ folder itself), "
        f"or go online once so audiosim can download them into {cache_dir() / model}{BASELINE_HINT}."
    )


def without_baseline_hint(message: str, *, instead: str) -> str:
    """``message`` with the ``--embedder logmel`` suggestion replaced by ``instead`` (for commands without --embedder)."""
    return message.replace(BASELINE_HINT + ".", ". " + instead)


def resolve_or_download(
    model: str,
    *,
    names: Sequence[str],
    downloads: Sequence[Download] = (),
    allow_download: bool | None = None,
    progress: bool = True,
    allow_unpinned: bool | None = None,
) -> Path:
    """Find ``model``'s weights locally, else download the official file into the cache."""
    local = find_local(model, names)
    if local is not None:
        return local
    if allow_download is None:
        allow_download = not _env_flag(OFFLINE_ENV)
    errors = []
    if allow_download:
        for spec in downloads:
            try:
                return download(spec, cache_dir() / model, progress=progress, allow_unpinned=allow_unpinned)
            except DownloadStorageError as e:  # not a network problem: another mirror would fail the same way
                raise DownloadStorageError(f"{e}; or set {CACHE_ENV} to a folder on a disk with room") from e
            except DownloadError as e:
                errors.append(str(e))
    message = not_found_message(model, names=names)
    if errors:
        message += " Download attempts: " + " | ".join(errors)
    raise WeightsNotFoundError(message)


@dataclass(frozen=True)
class TfWeights:
    """How a TensorFlow model's weights may be given (YAMNet, VGGish): besides a TF-Hub handle or a SavedModel
    folder, the model's own file kinds, tried in order as ``(backend, accepts(path), file name in a folder)``."""

    model: str
    files: tuple
    expected: str  # what --weights takes besides a SavedModel or a handle, for the error
    hub_handle: str


def resolve_tf_weights(spec: TfWeights, weights: str | Path) -> tuple[str, str]:
    """``(backend, location)`` for explicit weights: ``("hub", handle or SavedModel folder)`` or one of
    ``spec.files``' backends; a :class:`WeightsFormatError` naming what is accepted otherwise."""
    w = str(weights)
    if w.startswith(("http://", "https://", "gs://")):
        return "hub", w
    p = Path(w).expanduser()
    if is_saved_model_dir(p):
        return "hub", str(p)
    for backend, accepts, _ in spec.files:
        if accepts(p):
            return backend, str(p)
    if p.is_dir():
        for backend, accepts, name in spec.files:
            if accepts(p / name):
                return backend, str(p / name)
        if is_saved_model_dir(p / "saved_model"):
            return "hub", str(p / "saved_model")
    raise WeightsFormatError(
        f"--weights {w}: expected {spec.expected}, a SavedModel directory (with saved_model.pb), "
        f"a folder holding one of them, or a TF-Hub handle such as {spec.hub_handle}"
    )


def search_tf_weights(spec: TfWeights) -> tuple[str, str] | None:
    """The first usable weights in the model's standard folders (:func:`candidate_dirs`), or ``None``."""
    for _, d in candidate_dirs(spec.model):
        try:
            return resolve_tf_weights(spec, d)
        except WeightsFormatError:
            continue
    return None
