"""The service's building blocks on their own: options, byte ranges, the bounded pool, --root checks, jobs.

Proves: loopback detection and the option rules of ServeConfig; Range parsing against RFC 9110
golden cases; the inference pool refuses work beyond workers + queue and drops work that waited
past its bound, never leaking a slot; folders outside --root (by '..', absolute path or symlink)
are refused; jobs run in order and report failures; the serve command refuses unsafe options
with the typed error.
"""

from __future__ import annotations

import threading
import time

import pytest

from audiosim.errors import AudiosimError
from audiosim.service.config import ServeConfig, is_loopback, parse_collection_arg
from audiosim.service.errors import Busy, Forbidden, RangeNotSatisfiable, ServeConfigError
from audiosim.service.jobs import JobRegistry
from audiosim.service.ranges import parse_range
from audiosim.service.security import check_token, folder_under_root
from audiosim.service.workers import InferencePool


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("host, loop", [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True),
                                        ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.7", False),
                                        ("example.org", False), ("", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def test_collection_names(tmp_path):
    assert parse_collection_arg(str(tmp_path / "esc50")) == ("esc50", tmp_path / "esc50")
    assert parse_collection_arg(f"dogs={tmp_path / 'x'}") == ("dogs", tmp_path / "x")
    with pytest.raises(ServeConfigError, match="NAME=DIR"):
        parse_collection_arg(f"bad name={tmp_path}")
    with pytest.raises(ServeConfigError, match="both named a"):
        ServeConfig.from_args([f"a={tmp_path}", f"a={tmp_path / 'y'}"])
    with pytest.raises(ServeConfigError, match="at least one"):
        ServeConfig.from_args([])


def test_config_rules(tmp_path):
    c = ((("c", tmp_path),))
    with pytest.raises(ServeConfigError, match="--root"):
        ServeConfig(collections=c, allow_write=True).check()
    with pytest.raises(ServeConfigError, match="not an existing folder"):
        ServeConfig(collections=c, allow_write=True, root=tmp_path / "missing").check()
    ServeConfig(collections=c, allow_write=True, root=tmp_path).check()
    with pytest.raises(ServeConfigError, match="at least 8"):
        ServeConfig(collections=c, token="short").check()
    with pytest.raises(ServeConfigError, match="positive"):
        ServeConfig(collections=c, max_upload_mb=0).check()
    with pytest.raises(ServeConfigError, match="origin"):
        ServeConfig(collections=c, cors=("https://x.example/path",)).check()
    assert issubclass(ServeConfigError, AudiosimError)


def test_serve_command_refuses_public_host_without_token(tmp_path):
    from click.testing import CliRunner

    from audiosim.commands.serve import serve_cmd

    result = CliRunner().invoke(serve_cmd, ["--collection", str(tmp_path), "--host", "0.0.0.0"])
    assert isinstance(result.exception, ServeConfigError) and "--token" in str(result.exception)


def test_check_port_names_the_option(tmp_path):
    import socket

    from audiosim.service.config import check_port

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ServeConfigError, match=f"port {port} on 127.0.0.1 is already in use.*--port N"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", port)  # free again once the other listener is closed
    with pytest.raises(ServeConfigError, match="--host"):
        check_port("no-such-host.invalid", port)


def test_serve_on_a_busy_port_says_so_before_serving(tmp_path):
    """`audiosim serve` on a taken port: one line naming --port, exit 2, and no 'serving ...' line first."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import audiosim

    repo_parent = str(Path(audiosim.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=repo_parent + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "audiosim", "serve", "--collection", f"c={tmp_path}",
                              "--port", str(port)], capture_output=True, text=True, timeout=120, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 2, out
    assert f"port {port} on 127.0.0.1 is already in use" in out and "--port" in out
    assert "serving" not in out and "Traceback" not in out and "loading" not in out


# ---------------------------------------------------------------- ranges
@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 999)), ("bytes=-100", (900, 999)),
    ("bytes=-5000", (0, 999)), ("bytes=990-5000", (990, 999)), ("bytes=5-5", (5, 5)), (" bytes = 3 - 4 ", (3, 4)),
    ("items=0-5", None), ("bytes=0-5,10-20", None), ("bytes=9-3", None), ("bytes=abc", None), ("bytes=-", None),
])
def test_parse_range_golden(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(RangeNotSatisfiable) as e:
        parse_range(header, 1000)
    assert e.value.headers["Content-Range"] == "bytes */1000" and e.value.status == 416


# ---------------------------------------------------------------- pool
def test_pool_refuses_beyond_capacity_and_frees_slots():
    pool = InferencePool(workers=1, queue=1, max_wait_s=30)
    gate = threading.Event()
    try:
        running = pool.submit(gate.wait, 30)
        queued = pool.submit(lambda: "second")
        with pytest.raises(Busy) as e:
            pool.submit(lambda: "third")
        assert e.value.status == 503 and e.value.headers["Retry-After"] == "1"
        s = pool.stats()
        assert (s.admitted, s.capacity, s.rejected) == (2, 2, 1)
        gate.set()
        assert running.result(timeout=30)[0] is True
        assert queued.result(timeout=30)[0] == "second"
        assert queued.result()[1] >= 0  # ms waited in the queue
        deadline = time.monotonic() + 30
        while pool.stats().admitted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.stats().admitted == 0 and pool.stats().queued == 0
        assert pool.submit(lambda: 3).result(timeout=30)[0] == 3
    finally:
        gate.set()
        pool.close()


def test_pool_drops_work_that_waited_past_its_bound():
    pool = InferencePool(workers=1, queue=4, max_wait_s=0.05)
    gate = threading.Event()
    ran = []
    try:
        first = pool.submit(gate.wait, 30)
        late = pool.submit(ran.append, "late")
        time.sleep(0.3)  # the queued job is now far past its 0.05 s bound
        gate.set()
        first.result(timeout=30)
        with pytest.raises(Busy, match="queue bound"):
            late.result(timeout=30)
        assert ran == [] and pool.stats().expired == 1
    finally:
        gate.set()
        pool.close()


def test_pool_errors_propagate_and_release():
    pool = InferencePool(workers=1, queue=0, max_wait_s=5)
    try:
        def boom():
            raise AudiosimError("bad clip")

        with pytest.raises(AudiosimError, match="bad clip"):
            pool.submit(boom).result(timeout=30)
        assert pool.submit(lambda: "ok").result(timeout=30)[0] == "ok"
    finally:
        pool.close()


# ---------------------------------------------------------------- security
def test_folder_under_root(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    assert folder_under_root("a/b", root) == (root / "a" / "b").resolve()
    assert folder_under_root(str(root / "a"), root) == (root / "a").resolve()
    assert folder_under_root(".", root) == root.resolve()
    for bad in ("../outside", str(outside), "/etc", "a/../../outside", "link", "a/../link", "", "a\x00b"):
        with pytest.raises(Forbidden):
            folder_under_root(bad, root)
    with pytest.raises(Forbidden, match="not an existing folder"):
        folder_under_root("a/missing", root)
    (tmp_path / "root2").mkdir()
    with pytest.raises(Forbidden, match="outside"):  # a sibling whose name starts like root's is not under it
        folder_under_root(str(tmp_path / "root2"), root)


def test_check_token():
    check_token(None, None, None)  # no token configured: open
    check_token("tok-12345", "Bearer tok-12345", None)
    check_token("tok-12345", "bearer   tok-12345", None)
    check_token("tok-12345", None, "tok-12345")
    for auth, cookie in ((None, None), ("Bearer nope", None), ("Basic tok-12345", None), ("tok-12345", None),
                         (None, "nope"), ("Bearer ", None)):
        with pytest.raises(AudiosimError) as e:
            check_token("tok-12345", auth, cookie)
        assert e.value.status == 401


# ---------------------------------------------------------------- jobs
def test_jobs_run_in_order_and_report():
    jobs = JobRegistry(keep=10)
    order = []
    try:
        def work(name):
            def fn(report):
                report(step=1)
                order.append(name)
                return {"name": name}
            return fn

        def fail(report):
            raise AudiosimError("the folder vanished")

        a = jobs.start(kind="index", collection="c", params={}, fn=work("a"))
        b = jobs.start(kind="index", collection="c", params={}, fn=fail)
        c = jobs.start(kind="index", collection="c", params={}, fn=work("c"))
        deadline = time.monotonic() + 30
        while jobs.get(c.id).state not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert order == ["a", "c"]
        assert jobs.get(a.id).state == "done" and jobs.get(a.id).result == {"name": "a"}
        assert jobs.get(a.id).progress == {"step": 1}
        assert jobs.get(b.id).state == "failed" and jobs.get(b.id).error == "the folder vanished"
        assert [j.id for j in jobs.list()] == [c.id, b.id, a.id]
        assert jobs.get("nope") is None
    finally:
        jobs.close()
