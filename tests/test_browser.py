"""The page in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium.

Proves, against a running `audiosim serve` (a subprocess on 127.0.0.1): the page loads the
collections; uploading a clip shows a ranked list of clips of the same kind with spectrogram
thumbnails; a result's audio element loads, plays (muted) and seeks (Range requests); "more like
this" runs an id search and puts it in the URL, and opening that URL again shows the same list;
a non-audio upload shows a readable error. Saves docs/serve.png, the screenshot README shows.
Skips, saying why, when Chromium, chromedriver or selenium is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import audiosim

REPO = Path(audiosim.__file__).resolve().parent
SCREENSHOT = REPO / "docs" / "serve.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="chromedriver is not installed (apt-get install chromium-driver)"),
]
selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'audiosim[serve]'")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT_S = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    from audiosim.engine.synth import write_demo_folder

    folder = tmp_path_factory.mktemp("browser_sounds")
    write_demo_folder(folder, per_kind=4, seed=7)
    root = tmp_path_factory.mktemp("browser_coll") / "sounds"
    audiosim.index_folder(folder, root, embedder="logmel")
    queries = tmp_path_factory.mktemp("browser_queries")
    return root, {p.parent.name: p for p in write_demo_folder(queries, per_kind=1, seed=99)}


@pytest.fixture(scope="module")
def server(collection):
    root, _ = collection
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "audiosim", "serve", "--collection", f"sounds={root}",
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


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-default-apps", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",  # a synthetic microphone
                 "--window-size=1180,1380", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, what):
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(d), message=f"waiting for {what}")


def hits(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#results li.hit")


def load_page(driver, url):
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === '1'"), "the page to load")
    message = driver.find_element(By.ID, "message")
    assert not message.is_displayed(), message.text


def choose_file(driver, path):
    field = driver.find_element(By.ID, "file")
    driver.execute_script("arguments[0].hidden = false;", field)
    field.send_keys(str(path))
    driver.execute_script("arguments[0].hidden = true;", field)
    wait(driver, lambda d: d.find_element(By.ID, "search").is_enabled(), "the search button")


PLAY_AND_SEEK = """
const a = arguments[0], done = arguments[arguments.length - 1];
a.muted = true;
const fail = (e) => done({error: String(e), readyState: a.readyState, code: a.error && a.error.code});
const seek = () => {
  a.addEventListener('seeked', () => done({readyState: a.readyState, duration: a.duration,
                                           currentTime: a.currentTime, played: true}), {once: true});
  a.currentTime = a.duration / 2;
};
const play = () => a.play().then(() => { a.pause(); seek(); }).catch(fail);
a.addEventListener('error', () => fail('media error'), {once: true});
if (a.readyState >= 1) play(); else { a.addEventListener('loadedmetadata', play, {once: true}); a.load(); }
"""


def test_page_upload_listen_more_like_this(server, collection, browser):
    _, queries = collection
    load_page(browser, server)
    options = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#collection option")]
    assert options == ["sounds"]
    labels = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#label option")]
    assert set(labels) == {"", "tone", "chirp", "noise", "clicks", "hum"}

    k = browser.find_element(By.ID, "k")
    k.clear()
    k.send_keys("5")
    choose_file(browser, queries["chirp"])
    wait(browser, lambda d: "s ·" in d.find_element(By.ID, "file-info").text, "the clip to be decoded in the browser")
    for field, value in (("start", "0.3"), ("end", "1.8")):  # search a time range of the query clip
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.ID, "search").click()
    wait(browser, lambda d: len(hits(d)) == 5, "five results")
    cards = hits(browser)
    assert [c.find_element(By.CSS_SELECTOR, ".rank").text for c in cards] == ["1", "2", "3", "4", "5"]
    assert [c.find_element(By.CSS_SELECTOR, ".label").text for c in cards][:4] == ["chirp"] * 4  # all 4 chirps first
    scores = [float(c.find_element(By.CSS_SELECTOR, ".score").text) for c in cards]
    assert scores == sorted(scores, reverse=True)
    assert "chirp/" in cards[0].find_element(By.CSS_SELECTOR, ".name").text
    assert browser.find_element(By.ID, "results-title").text == "Sounds like chirp_00.wav (0.30–1.80 s)"

    wait(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img.spec')].every(i => i.complete && i.naturalWidth === 320)"),
        "the spectrogram thumbnails")
    audio = cards[0].find_element(By.TAG_NAME, "audio")
    state = browser.execute_async_script(PLAY_AND_SEEK, audio)
    assert "error" not in state, state
    assert state["readyState"] >= 1 and state["duration"] > 1.0 and state["played"]
    assert abs(state["currentTime"] - state["duration"] / 2) < 0.2

    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000

    second_id = cards[1].get_attribute("data-id")
    cards[1].find_element(By.CSS_SELECTOR, "button.more").click()
    wait(browser, lambda d: f"id={second_id}" in d.current_url, "the id search in the URL")
    wait(browser, lambda d: "More like" in d.find_element(By.ID, "results-title").text
         and len(hits(d)) == 5 and hits(d)[0].get_attribute("data-id") != second_id, "the more-like-this results")
    shared = [c.get_attribute("data-id") for c in hits(browser)]
    assert second_id not in shared  # 'skip the query's own file' is on by default
    assert [c.find_element(By.CSS_SELECTOR, ".label").text for c in hits(browser)][:3] == ["chirp"] * 3

    url = browser.current_url
    load_page(browser, url)  # the URL alone reproduces the id search: it can be shared
    wait(browser, lambda d: len(hits(d)) == 5, "the shared URL's results")
    assert [c.get_attribute("data-id") for c in hits(browser)] == shared


def test_record_from_the_microphone_and_search(server, browser):
    """Chromium's fake microphone (a beep) is recorded, converted to WAV in the page, and searched."""
    load_page(browser, server)
    record = browser.find_element(By.ID, "record")
    record.click()
    wait(browser, lambda d: record.get_attribute("aria-pressed") == "true", "the recording to start")
    wait(browser, lambda d: float((d.find_element(By.ID, "record-time").text or "0 s").split()[0]) >= 1.5,
         "1.5 s of recording")
    record.click()
    wait(browser, lambda d: d.find_element(By.ID, "file-info").text.startswith("recording.wav ·")
         and " s ·" in d.find_element(By.ID, "file-info").text, "the recording to become the query clip")
    duration = float(browser.find_element(By.ID, "file-info").text.split(" · ")[1].rstrip(" s"))
    assert duration >= 1.0
    browser.find_element(By.ID, "search").click()
    wait(browser, lambda d: len(hits(d)) == 10 or d.find_element(By.ID, "message").is_displayed(), "results")
    assert not browser.find_element(By.ID, "message").is_displayed(), browser.find_element(By.ID, "message").text
    assert browser.find_element(By.ID, "results-title").text.startswith("Sounds like recording.wav")


def test_page_shows_readable_errors(server, browser, tmp_path):
    load_page(browser, server)
    text = tmp_path / "notes.wav"
    text.write_text("these are meeting notes, not a recording\n" * 20)
    choose_file(browser, text)
    browser.find_element(By.ID, "search").click()
    message = browser.find_element(By.ID, "message")
    wait(browser, lambda d: message.is_displayed() and message.text, "an error message")
    assert "not audio" in message.text and "notes.wav" in message.text
    assert "Traceback" not in message.text
