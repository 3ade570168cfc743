"""The page in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium.

Proves, against a running `audiosim serve` (a subprocess on 127.0.0.1): the page loads the
collections (labels sorted by name, no request failing, a favicon); uploading a clip shows a
ranked list of clips of the same kind with spectrogram thumbnails with time and frequency axes;
a result's audio element loads, plays (muted) and seeks (Range requests); "more like this" runs
an id search and puts it in the URL, and opening that URL again shows the same list; Back and
Forward show earlier results again; results download as CSV and JSON; a region hit of a long
recording plays and draws the whole region; a tag alone searches (YAMNet collection); errors are
readable and clear old results; /docs and /redoc list the API and make no request to another host.

Screenshots go to a temporary folder: the tests leave the clone as it was. To refresh the one
README shows, run `make screenshot` (AUDIOSIM_SCREENSHOT=docs/serve.png names where to save it).
Skips, saying why, when Chromium, chromedriver or selenium is missing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import pytest

import audiosim
from browser_helpers import CHROMEDRIVER, CHROMIUM, REPO, WAIT_S, chromium, serving

SCREENSHOT = os.environ.get("AUDIOSIM_SCREENSHOT")  # set by `make screenshot`: where to save the page's picture

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="chromedriver is not installed (apt-get install chromium-driver)"),
]
selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'audiosim[serve]'")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402



def yamnet_weights() -> Path | None:
    base = os.environ.get("AUDIOSIM_MODELS")
    path = Path(base) / "yamnet" / "yamnet.tflite" if base else None
    return path if path is not None and path.is_file() else None


@pytest.fixture(scope="module", autouse=True)
def clone_left_alone():
    """The browser tests write nothing into the clone (`make test` leaves `git status` clean)."""
    def pictures():
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((REPO / "docs").glob("*.png"))}

    before = pictures()
    yield
    if not SCREENSHOT:
        assert pictures() == before, "a browser test changed a picture under docs/"


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Synthetic sounds (logmel, 'sounds'), a synthetic 30 s recording in 2 s segments ('long'), and with YAMNet's
    weights the sounds again with classifier tags ('tagged')."""
    import numpy as np
    import soundfile as sf

    from audiosim.engine.audio import synth
    from audiosim.engine.audio.synth import write_demo_folder

    folder = tmp_path_factory.mktemp("browser_sounds")
    write_demo_folder(folder, per_kind=4, seed=7)
    base = tmp_path_factory.mktemp("browser_coll")
    audiosim.index_folder(folder, base / "sounds", embedder="logmel")
    queries = tmp_path_factory.mktemp("browser_queries")
    clips = {p.parent.name: p for p in write_demo_folder(queries, per_kind=1, seed=99)}

    rec = tmp_path_factory.mktemp("browser_long")
    rng = np.random.default_rng(5)
    x = 0.05 * synth.noise(duration_s=30.0, color="pink", rng=rng)  # a chirp at 10-14 s in pink noise
    x[16000 * 10:16000 * 14] += 0.8 * synth.chirp(f0=300, f1=4000, duration_s=4.0, rng=rng)
    sf.write(rec / "field.wav", x.astype(np.float32), 16000)
    sf.write(queries / "excerpt.wav", x[16000 * 10:16000 * 14].astype(np.float32), 16000)
    clips["excerpt"] = queries / "excerpt.wav"
    audiosim.index_folder(rec, base / "long", embedder="logmel", segment_s=2.0, segment_hop_s=1.0)
    clips["in_collection"] = sorted(folder.glob("hum/*.wav"))[0]
    roots = {"sounds": base / "sounds", "long": base / "long"}
    weights = yamnet_weights()
    if weights is not None:
        audiosim.index_folder(folder, base / "tagged", embedder="yamnet", weights=weights)
        roots["tagged"] = base / "tagged"
    return roots, clips


@pytest.fixture(scope="module")
def server(collection):
    roots, _ = collection
    with serving(roots) as url:
        yield url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(tmp_path_factory, downloads):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"), log_performance=True,
                      prefs={"download.default_directory": str(downloads), "download.prompt_for_download": False},
                      flags=("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",  # a synthetic mic
                             "--window-size=1180,1380"))
    driver.set_script_timeout(WAIT_S)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
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


def network(driver) -> tuple[list[str], list[tuple[str, int]]]:
    """(URLs requested, (URL, status) of answers) since the last call, from Chromium's performance log.

    A request the browser itself blocked (the page's Content-Security-Policy) never left it and is not counted.
    """
    asked, answered, blocked = {}, [], set()
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        params = msg.get("params", {})
        if msg["method"] == "Network.requestWillBeSent":
            asked[params["requestId"]] = params["request"]["url"]
        elif msg["method"] == "Network.responseReceived":
            answered.append((params["response"]["url"], params["response"]["status"]))
        elif msg["method"] == "Network.loadingFailed" and params.get("blockedReason"):
            blocked.add(params["requestId"])
    return [url for rid, url in asked.items() if rid not in blocked], answered


def choose_collection(driver, name, shows):
    Select(driver.find_element(By.ID, "collection")).select_by_value(name)
    wait(driver, lambda d: shows in d.find_element(By.ID, "collection-info").text, f"collection {name} to load")


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


def test_page_upload_listen_more_like_this(server, collection, browser, tmp_path):
    _, queries = collection
    network(browser)
    load_page(browser, server)
    options = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#collection option")]
    assert options[:2] == ["sounds", "long"]
    labels = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#label option")]
    assert labels == ["", "chirp", "clicks", "hum", "noise", "tone"]  # by name, not by count
    _, answered = network(browser)
    assert any(url.endswith("/static/favicon.svg") and status == 200 for url, status in answered), answered
    assert not [(url, status) for url, status in answered if status >= 400]

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
        "return [...document.querySelectorAll('#results .spec img')].every(i => i.complete && i.naturalWidth === 320)"),
        "the spectrogram thumbnails")
    first = cards[0]
    times = [t.text for t in first.find_elements(By.CSS_SELECTOR, ".spec .axis.time span")]
    duration = float(first.find_element(By.CSS_SELECTOR, ".offset").text.split(" · ")[1].rstrip(" s"))
    assert times[0] == "0.00 s" and times[2] == f"{duration:.2f} s"
    assert abs(float(times[1].rstrip(" s")) - duration / 2) <= 0.011
    freqs = [t.text for t in first.find_elements(By.CSS_SELECTOR, ".spec .axis.freq span")]
    assert freqs == ["8 kHz", "4k", "2k", "1k", "250"]
    audio = cards[0].find_element(By.TAG_NAME, "audio")
    state = browser.execute_async_script(PLAY_AND_SEEK, audio)
    assert "error" not in state, state
    assert state["readyState"] >= 1 and state["duration"] > 1.0 and state["played"]
    assert abs(state["currentTime"] - state["duration"] / 2) < 0.2

    picture = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "serve.png"
    browser.save_screenshot(str(picture))
    assert picture.stat().st_size > 10_000

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


def test_page_shows_readable_errors_and_clears_old_results(server, collection, browser, tmp_path):
    _, queries = collection
    load_page(browser, server)
    choose_file(browser, queries["tone"])
    browser.find_element(By.ID, "search").click()
    wait(browser, lambda d: len(hits(d)) == 10, "results")
    text = tmp_path / "notes.wav"
    text.write_text("these are meeting notes, not a recording\n" * 20)
    choose_file(browser, text)
    browser.find_element(By.ID, "search").click()
    message = browser.find_element(By.ID, "message")
    wait(browser, lambda d: message.is_displayed() and message.text, "an error message")
    assert "not audio" in message.text and "notes.wav" in message.text
    assert "Traceback" not in message.text and "`audiosim" not in message.text
    assert not hits(browser) and not browser.find_element(By.ID, "results-panel").is_displayed()


def test_back_restores_results_and_results_download(server, collection, browser, downloads):
    _, queries = collection
    load_page(browser, server)
    choose_file(browser, queries["noise"])
    browser.find_element(By.ID, "search").click()
    wait(browser, lambda d: len(hits(d)) == 10, "the upload's results")
    first_title = browser.find_element(By.ID, "results-title").text
    first_ids = [c.get_attribute("data-id") for c in hits(browser)]

    for name in ("csv", "json"):
        browser.find_element(By.ID, f"export-{name}").click()
    files = {"csv": downloads / "audiosim-sounds-results.csv", "json": downloads / "audiosim-sounds-results.json"}
    wait(browser, lambda d: all(f.is_file() and f.stat().st_size for f in files.values()), "the two downloads")
    rows = list(csv.DictReader(files["csv"].open(newline="")))
    assert [r["id"] for r in rows] == first_ids and [r["rank"] for r in rows] == [str(i) for i in range(1, 11)]
    shown = [c.find_element(By.CSS_SELECTOR, ".label").text for c in hits(browser)]
    assert [r["label"] for r in rows] == shown, rows
    assert [r["path"] for r in rows] == [c.find_element(By.CSS_SELECTOR, ".name").text for c in hits(browser)]
    answer = json.loads(files["json"].read_text())
    assert [str(h["id"]) for h in answer["hits"]] == first_ids and answer["collection"] == "sounds"

    hits(browser)[2].find_element(By.CSS_SELECTOR, "button.more").click()
    wait(browser, lambda d: "id=" in d.current_url and "More like" in d.find_element(By.ID, "results-title").text,
         "the more-like-this results")
    second_ids = [c.get_attribute("data-id") for c in hits(browser)]
    assert second_ids != first_ids
    browser.back()
    wait(browser, lambda d: d.find_element(By.ID, "results-title").text == first_title, "Back to the upload's results")
    assert [c.get_attribute("data-id") for c in hits(browser)] == first_ids
    browser.forward()
    wait(browser, lambda d: "More like" in d.find_element(By.ID, "results-title").text, "Forward again")
    assert [c.get_attribute("data-id") for c in hits(browser)] == second_ids


def test_uploading_a_collection_file_skips_it(server, collection, browser):
    """'skip the query's own file' also applies to an upload that is a file of the collection (same bytes)."""
    _, queries = collection
    own = queries["in_collection"]
    load_page(browser, server)
    choose_file(browser, own)
    browser.find_element(By.ID, "search").click()
    wait(browser, lambda d: len(hits(d)) == 10, "results")
    assert own.name not in [c.find_element(By.CSS_SELECTOR, ".name").text.split("/")[-1] for c in hits(browser)]
    browser.find_element(By.ID, "exclude-same").click()  # off: the file itself comes first, at 1.000
    browser.find_element(By.ID, "search").click()
    wait(browser, lambda d: hits(d) and d.find_element(By.CSS_SELECTOR, "#results li.hit .name").text.endswith(own.name),
         "the file itself first")
    assert hits(browser)[0].find_element(By.CSS_SELECTOR, ".score").text == "1.000"


def test_region_hit_plays_and_draws_the_region(server, collection, browser):
    _, queries = collection
    load_page(browser, server)
    choose_collection(browser, "long", "segments")
    choose_file(browser, queries["excerpt"])
    browser.find_element(By.ID, "search").click()
    wait(browser, lambda d: hits(d) and "segments" in hits(d)[0].find_element(By.CSS_SELECTOR, ".offset").text,
         "a region hit")
    card = hits(browser)[0]
    start, end = (float(v) for v in card.find_element(By.CSS_SELECTOR, ".offset").text.split(" · ")[0]
                  .lstrip("@ ").rstrip(" s").split("–"))
    assert end - start >= 3.0 and start <= 10.5 and end >= 13.5  # the 4 s chirp, not one 2 s segment
    state = browser.execute_async_script(PLAY_AND_SEEK, card.find_element(By.TAG_NAME, "audio"))
    assert "error" not in state, state
    assert abs(state["duration"] - (end - start)) < 0.02  # the player holds the whole region
    times = [t.text for t in card.find_elements(By.CSS_SELECTOR, ".spec .axis.time span")]
    def shown(t):  # the page's tick format
        return f"{t:.2f} s" if t < 10 else f"{t:.1f} s"

    assert times[0] == shown(start) and times[-1] == shown(end)
    src = card.find_element(By.CSS_SELECTOR, ".spec img").get_attribute("src")
    assert "start=" in src and "end=" in src


@pytest.mark.skipif(yamnet_weights() is None, reason="tag search needs YAMNet: set AUDIOSIM_MODELS to a folder holding "
                                                     "yamnet/yamnet.tflite (.ci/run sets it from ../shared)")
def test_tag_alone_searches_and_suggests(server, browser):
    load_page(browser, server)
    choose_collection(browser, "tagged", "yamnet")
    suggestions = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#tag-list option")]
    assert len(suggestions) == 521 and "Dog" in suggestions
    tag = suggestions[0]  # the tag most items of this collection hold
    assert browser.find_element(By.ID, "search").get_attribute("disabled")  # no clip and no tag yet
    box = browser.find_element(By.ID, "tag")
    box.send_keys(tag)
    browser.find_element(By.ID, "search").click()
    wait(browser, lambda d: hits(d) and d.find_element(By.ID, "results-title").text == f"Tagged “{tag}”", "tag results")
    assert tag in hits(browser)[0].find_element(By.CSS_SELECTOR, ".tags").text  # the best-scored item shows it
    assert "tag=" in browser.current_url  # the address reproduces the search

    box.clear()
    box.send_keys("Sine wav")
    browser.find_element(By.ID, "search").click()
    message = browser.find_element(By.ID, "message")
    wait(browser, lambda d: message.is_displayed() and message.text, "the unknown-tag message")
    assert "Sine wave" in message.text and "Tag box" in message.text and "audiosim" not in message.text
    assert not hits(browser)


def test_docs_and_redoc_work_offline(server, browser):
    """/docs and /redoc list the API's operations with every request answered by this server."""
    origin = server.rstrip("/")
    for page, ready in (("docs", ".opblock"), ("redoc", "[data-section-id^='operation/']")):
        network(browser)
        browser.get(server + page)
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ready)) >= 8, f"{page} to list the operations")
        assert "/api/collections/{name}/search" in browser.find_element(By.TAG_NAME, "body").text
        asked, answered = network(browser)
        elsewhere = [u for u in asked if not u.startswith(origin + "/") and not u.startswith(("data:", "blob:"))]
        assert asked and not elsewhere, elsewhere
        assert not [(u, s) for u, s in answered if s >= 400]
