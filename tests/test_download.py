"""audiosim.engine.models.weights against a local HTTP server: every download pinned, resumed only from the same
bytes, no debris after a failure, archives unpacked atomically; and the weights resolution order."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from audiosim.engine.models import weights as wts
from audiosim.errors import DownloadError, WeightsNotFoundError

PAYLOAD = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
OTHER = np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes()  # same length, other bytes
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload`` at /file.bin with Range and If-Range support (ETag = a hash of the
    payload, so it changes with it); /missing is a 404. Knobs on the server: ``cut_at`` drops the
    connection after that many bytes of the file, ``ignore_range`` answers 200 to Range requests,
    ``validators=False`` sends neither ETag nor Last-Modified, ``bad_offset`` answers a Range
    request with a 206 that starts at byte 0."""

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range"), self.headers.get("If-Range")))
        if self.path != "/file.bin":
            self.send_error(404)
            return
        payload = srv.payload
        etag = '"' + hashlib.sha256(payload).hexdigest()[:16] + '"'
        start, status = 0, 200
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if_range = self.headers.get("If-Range")
        if m and not srv.ignore_range and (if_range is None or if_range == etag):
            start = 0 if srv.bad_offset else int(m.group(1))
            if start >= len(payload):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = payload[start:]
        self.send_response(status)
        if srv.validators:
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", formatdate(0, usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_at is not None and start < srv.cut_at:
            body = body[: srv.cut_at - start]  # then the connection closes early
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests, srv.payload, srv.cut_at = [], PAYLOAD, None
    srv.ignore_range, srv.validators, srv.bad_offset = False, True, False
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _spec(server, **kw):
    return wts.Download(url=server.url + "/file.bin", filename="model.bin", **kw)


def _ranges(server):
    return [r for _, r, _ in server.requests]


def _interrupt(server, tmp_path, *, at=20_000, sha256=SHA256):
    """A first run that loses the connection after ``at`` bytes (leaves the part file and its record)."""
    server.cut_at = at
    with pytest.raises(DownloadError, match=f"interrupted after {at} of 50000 bytes; run again to resume"):
        wts.download(_spec(server, sha256=sha256), tmp_path, progress=False)
    server.cut_at = None
    assert (tmp_path / "model.bin.part").stat().st_size == at and (tmp_path / "model.bin.part.json").is_file()


def test_download_verifies_and_leaves_no_part_file(server, tmp_path):
    path = wts.download(_spec(server, sha256=SHA256, size=len(PAYLOAD), md5=MD5), tmp_path / "d", progress=False)
    assert path == tmp_path / "d" / "model.bin" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["model.bin"]
    assert _ranges(server) == [None]


def test_an_unpinned_download_is_refused_before_any_request(server, tmp_path, monkeypatch):
    monkeypatch.delenv(wts.ALLOW_UNPINNED_ENV, raising=False)
    for spec in (_spec(server), _spec(server, md5=MD5)):  # an MD5 alone is not a pin
        with pytest.raises(DownloadError, match="has no pinned sha256.*allow_unpinned=True"):
            wts.download(spec, tmp_path, progress=False)
    assert server.requests == [] and list(tmp_path.iterdir()) == []
    assert wts.download(_spec(server), tmp_path, progress=False, allow_unpinned=True).read_bytes() == PAYLOAD
    (tmp_path / "model.bin").unlink()
    monkeypatch.setenv(wts.ALLOW_UNPINNED_ENV, "1")
    assert wts.download(_spec(server), tmp_path, progress=False).read_bytes() == PAYLOAD


def test_every_official_download_is_pinned():
    from audiosim.engine.models.embedders import panns, vggish, yamnet

    specs = [yamnet.HUB_DOWNLOAD, vggish.CKPT_DOWNLOAD, vggish.PCA_DOWNLOAD] + [d for _, d in panns.CHECKPOINTS.values()]
    for spec in specs:
        full = wts.pinned(spec)
        assert full.sha256 and re.fullmatch(r"[0-9a-f]{64}", full.sha256), spec.url
    assert set(wts.PINNED) == {s.url for s in specs}
    # The PANNs pins agree with the MD5s the Zenodo record publishes (already in panns.py).
    for _, spec in panns.CHECKPOINTS.values():
        assert wts.PINNED[spec.url].md5 == spec.md5
    assert wts.pinned(vggish.PCA_DOWNLOAD) == vggish.PCA_DOWNLOAD  # an explicit value is kept
    assert wts.pinned(wts.Download(url="http://x/y", filename="y")).sha256 is None


def test_a_dropped_connection_resumes_with_range_and_if_range(server, tmp_path):
    _interrupt(server, tmp_path)
    assert wts.download(_spec(server, sha256=SHA256), tmp_path, progress=False).read_bytes() == PAYLOAD
    _, rng, if_range = server.requests[-1]
    assert rng == "bytes=20000-" and if_range and if_range.startswith('"')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_a_part_without_its_record_restarts_from_zero(server, tmp_path):
    (tmp_path / "model.bin.part").write_bytes(PAYLOAD[:12_345])
    assert wts.download(_spec(server, sha256=SHA256), tmp_path, progress=False).read_bytes() == PAYLOAD
    assert _ranges(server) == [None]


def test_a_part_recorded_for_other_bytes_restarts_from_zero(server, tmp_path):
    _interrupt(server, tmp_path, sha256=hashlib.sha256(OTHER).hexdigest())  # a part begun for another file
    assert wts.download(_spec(server, sha256=SHA256), tmp_path, progress=False).read_bytes() == PAYLOAD
    assert _ranges(server)[-1] is None


def test_a_file_changed_on_the_server_is_fetched_whole_not_spliced(server, tmp_path):
    _interrupt(server, tmp_path, sha256=hashlib.sha256(OTHER).hexdigest())
    server.payload = OTHER  # new ETag: the If-Range request gets the whole new file
    got = wts.download(_spec(server, sha256=hashlib.sha256(OTHER).hexdigest()), tmp_path, progress=False)
    assert got.read_bytes() == OTHER
    assert server.requests[-1][1] == "bytes=20000-" and len(server.requests) == 2


def test_without_validators_a_spliced_file_fails_its_checksum_and_restarts_from_zero(server, tmp_path):
    server.validators = False
    other_sha = hashlib.sha256(OTHER).hexdigest()
    _interrupt(server, tmp_path, sha256=other_sha)
    server.payload = OTHER  # the server resumes blindly: 20000 bytes of PAYLOAD + the tail of OTHER
    got = wts.download(_spec(server, sha256=other_sha), tmp_path, progress=False)
    assert got.read_bytes() == OTHER
    assert _ranges(server) == [None, "bytes=20000-", None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_a_resume_at_the_wrong_offset_restarts(server, tmp_path):
    _interrupt(server, tmp_path)
    server.bad_offset = True
    assert wts.download(_spec(server, sha256=SHA256), tmp_path, progress=False).read_bytes() == PAYLOAD
    assert _ranges(server) == [None, "bytes=20000-", None]


def test_a_server_ignoring_range_restarts_the_file(server, tmp_path):
    _interrupt(server, tmp_path)
    server.ignore_range = True
    assert wts.download(_spec(server, sha256=SHA256), tmp_path, progress=False).read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def test_a_complete_part_file_is_finished_after_a_416(server, tmp_path):
    _interrupt(server, tmp_path)
    with open(tmp_path / "model.bin.part", "ab") as f:  # as if the rest had arrived before a crash
        f.write(PAYLOAD[20_000:])
    assert wts.download(_spec(server, sha256=SHA256), tmp_path, progress=False).read_bytes() == PAYLOAD
    assert _ranges(server)[-1] == f"bytes={len(PAYLOAD)}-"


def test_a_416_for_another_length_restarts(server, tmp_path):
    _interrupt(server, tmp_path)
    with open(tmp_path / "model.bin.part", "ab") as f:  # longer than the server's file
        f.write(PAYLOAD[20_000:] + b"junk")
    record = json.loads((tmp_path / "model.bin.part.json").read_text())
    record["total"] = None  # a record that no longer bounds the part
    (tmp_path / "model.bin.part.json").write_text(json.dumps(record))
    assert wts.download(_spec(server, sha256=SHA256), tmp_path, progress=False).read_bytes() == PAYLOAD
    assert _ranges(server)[-2:] == [f"bytes={len(PAYLOAD) + 4}-", None]


@pytest.mark.parametrize("kw,message", [
    ({"sha256": "0" * 64}, f"sha256 {SHA256} does not match the expected {'0' * 64}; the file was removed"),
    ({"sha256": SHA256, "md5": "f" * 32}, f"md5 {MD5} does not match the expected {'f' * 32}; the file was removed"),
    ({"sha256": SHA256, "size": len(PAYLOAD) + 1},
     f"received {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}; the partial file was removed"),
])
def test_mismatch_is_a_clear_error_and_leaves_no_file(server, tmp_path, kw, message):
    with pytest.raises(DownloadError) as e:
        wts.download(_spec(server, **kw), tmp_path, progress=False)
    assert message in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_mismatch_restarts_once_then_fails_cleanly(server, tmp_path):
    _interrupt(server, tmp_path, sha256="0" * 64)
    with pytest.raises(DownloadError, match="does not match the expected 0000"):
        wts.download(_spec(server, sha256="0" * 64), tmp_path, progress=False)
    assert _ranges(server) == [None, "bytes=20000-", None]  # resumed, then once more from zero
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_removes_the_part_file(server, tmp_path):
    # A real write failure: the child process may write files of at most 20000 bytes (RLIMIT_FSIZE).
    code = f"""
import json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
from audiosim.engine.models import weights as wts
from audiosim.errors import DownloadError
try:
    wts.download(wts.Download(url={server.url + '/file.bin'!r}, filename='model.bin', sha256={SHA256!r}),
                 {str(tmp_path)!r}, progress=False)
    print(json.dumps({{"ok": True}}))
except DownloadError as e:
    print(json.dumps({{"ok": False, "message": str(e)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not result["ok"] and "cannot write" in result["message"] and "partial file was removed" in result["message"]
    assert list(tmp_path.iterdir()) == []


class _FullDisk(io.FileIO):
    """A file on a disk that fills up after 20000 bytes: the write (at a buffer flush) raises ENOSPC."""

    def write(self, b):
        if self.tell() + len(b) > 20_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(b)


def _full_disk(monkeypatch):
    real = open

    def opener(path, mode="r", *args, **kw):
        if str(path).endswith(".part") and "b" in mode and mode[0] in "wa":
            return io.BufferedWriter(_FullDisk(path, mode.replace("b", "")), buffer_size=1 << 20)  # fails at flush
        return real(path, mode, *args, **kw)

    monkeypatch.setattr(wts, "open", opener, raising=False)


def test_a_full_disk_is_a_download_error_and_leaves_no_part_files(server, tmp_path, monkeypatch):
    """Issue 18: f.close() in the except handler flushed again and raised a bare OSError before the clean-up,
    leaving .part and .part.json."""
    _full_disk(monkeypatch)
    with pytest.raises(DownloadError, match="free disk space") as e:
        wts.download(_spec(server, sha256=SHA256), tmp_path, progress=False)
    assert "No space left on device" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_resolve_or_download_on_a_full_disk_is_a_typed_error_naming_the_fix(server, tmp_path, monkeypatch):
    """Issue 18: resolve_or_download passed the bare OSError on to the user."""
    monkeypatch.setenv("AUDIOSIM_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("AUDIOSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUDIOSIM_OFFLINE", raising=False)
    _full_disk(monkeypatch)
    with pytest.raises(DownloadError, match="free disk space"):
        wts.resolve_or_download("m", names=("model.bin",), downloads=(_spec(server, sha256=SHA256),), progress=False)
    assert list((tmp_path / "cache" / "m").iterdir()) == []


def test_http_error_is_a_download_error(server, tmp_path):
    spec = wts.Download(url=server.url + "/missing", filename="x.bin", sha256=SHA256)
    with pytest.raises(DownloadError, match="HTTP 404"):
        wts.download(spec, tmp_path, progress=False)


def test_resolve_or_download_order(server, tmp_path, monkeypatch):
    models, cache = tmp_path / "models", tmp_path / "cache"
    monkeypatch.setenv("AUDIOSIM_MODELS", str(models))
    monkeypatch.setenv("AUDIOSIM_CACHE", str(cache))
    monkeypatch.delenv("AUDIOSIM_OFFLINE", raising=False)
    spec = _spec(server, sha256=SHA256)
    for root in (models, cache):
        (root / "m").mkdir(parents=True)
        (root / "m" / "model.bin").write_bytes(root.name.encode())
    assert wts.resolve_or_download("m", names=("model.bin",), downloads=(spec,)) == models / "m" / "model.bin"
    (models / "m" / "model.bin").unlink()
    assert wts.resolve_or_download("m", names=("model.bin",), downloads=(spec,)) == cache / "m" / "model.bin"
    assert server.requests == []
    (cache / "m" / "model.bin").unlink()
    monkeypatch.setenv("AUDIOSIM_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="Pass --weights PATH, or set AUDIOSIM_MODELS"):
        wts.resolve_or_download("m", names=("model.bin",), downloads=(spec,))
    assert server.requests == []
    monkeypatch.delenv("AUDIOSIM_OFFLINE")
    path = wts.resolve_or_download("m", names=("model.bin",), downloads=(spec,), progress=False)
    assert path == cache / "m" / "model.bin" and path.read_bytes() == PAYLOAD
    assert _ranges(server) == [None]
    broken = wts.Download(url=server.url + "/missing", filename="other.bin", sha256=SHA256)
    with pytest.raises(WeightsNotFoundError, match="Download attempts: download of .*/missing failed: HTTP 404"):
        wts.resolve_or_download("m2", names=("other.bin",), downloads=(broken,), progress=False)


# ---------------------------------------------------------------------- extract_tar_atomic
def _tarball(path, members: dict[str, bytes], *, mode="w:gz"):
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _siblings(folder):
    return sorted(p.name for p in folder.iterdir())


def test_extract_tar_atomic_unpacks_and_replaces(tmp_path):
    archive = _tarball(tmp_path / "m.tar.gz", {"./saved_model.pb": b"pb", "./variables/variables.index": b"ix"})
    dest = tmp_path / "cache" / "saved_model"
    assert wts.extract_tar_atomic(archive, dest) == dest
    assert (dest / "saved_model.pb").read_bytes() == b"pb" and (dest / "variables" / "variables.index").read_bytes() == b"ix"
    assert _siblings(dest.parent) == ["saved_model"]
    (dest / "stale.txt").write_text("from an older extraction")
    wts.extract_tar_atomic(_tarball(tmp_path / "n.tar.gz", {"saved_model.pb": b"new"}), dest)
    assert _siblings(dest) == ["saved_model.pb"] and (dest / "saved_model.pb").read_bytes() == b"new"
    assert _siblings(dest.parent) == ["saved_model"]


@pytest.mark.parametrize("damage", ["truncated", "not_an_archive", "escaping_member", "link_out"])
def test_extract_tar_atomic_failure_leaves_dest_untouched(tmp_path, damage):
    dest = tmp_path / "cache" / "saved_model"
    dest.mkdir(parents=True)
    (dest / "saved_model.pb").write_bytes(b"good")
    archive = tmp_path / "bad.tar.gz"
    if damage == "truncated":
        data = _tarball(tmp_path / "ok.tar.gz", {"saved_model.pb": os.urandom(200_000)}).read_bytes()
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "not_an_archive":
        archive.write_bytes(b"<html>rate limited</html>")
    elif damage == "escaping_member":
        _tarball(archive, {"../evil.txt": b"x"})
    else:  # a symlink pointing out of the tree
        with tarfile.open(archive, "w:gz") as tar:
            info = tarfile.TarInfo("evil.txt")
            info.type, info.linkname = tarfile.SYMTYPE, "../../../evil.txt"
            tar.addfile(info)
    with pytest.raises(DownloadError, match="cannot unpack .* delete .* and run again"):
        wts.extract_tar_atomic(archive, dest)
    assert (dest / "saved_model.pb").read_bytes() == b"good" and _siblings(dest) == ["saved_model.pb"]
    assert _siblings(dest.parent) == ["saved_model"]
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "evil.txt").exists()


def test_extract_zip_atomic_unpacks_and_fails_cleanly(tmp_path):
    import zipfile

    archive = tmp_path / "esc.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ESC-50-master/meta/esc50.csv", "filename,fold\n")
        z.writestr("../evil.txt", "x")  # zipfile strips the '..'
    dest = tmp_path / "data" / "esc"
    assert wts.extract_zip_atomic(archive, dest) == dest
    assert (dest / "ESC-50-master" / "meta" / "esc50.csv").is_file() and not (tmp_path / "data" / "evil.txt").exists()
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(DownloadError, match="cannot unpack"):
        wts.extract_zip_atomic(archive, dest)
    assert (dest / "ESC-50-master" / "meta" / "esc50.csv").is_file() and _siblings(dest.parent) == ["esc"]
