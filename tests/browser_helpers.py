"""What the browser tests share: headless Chromium through Selenium, and `audiosim serve` in a subprocess.

Imported by the browser test modules after they have skipped when Chromium, chromedriver or selenium is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

import audiosim

REPO = Path(audiosim.__file__).resolve().parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 60
# Flags every test browser runs with: headless, no sandbox (root), no traffic of its own to other hosts.
BASE_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
              "--disable-default-apps", "--autoplay-policy=no-user-gesture-required")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium(profile: Path, *, flags: tuple[str, ...] = (), prefs: dict | None = None,
             log_performance: bool = False):
    """A headless Chromium driver with its own empty profile; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    if log_performance:
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes (CDP events)
    if prefs:
        opts.add_experimental_option("prefs", prefs)
    for flag in (*BASE_FLAGS, *flags, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))


@contextlib.contextmanager
def serving(collections: dict[str, Path]) -> Iterator[str]:
    """`audiosim serve` of ``{name: root}`` on a free local port; yields its URL once /healthz answers."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    given = [arg for name, root in collections.items() for arg in ("--collection", f"{name}={root}")]
    proc = subprocess.Popen([sys.executable, "-m", "audiosim", "serve", *given,
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"audiosim serve exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                if httpx.get(url + "healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("audiosim serve did not answer /healthz within a minute")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
