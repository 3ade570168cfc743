"""The page's Duplicates and Map views in a real browser (headless Chromium via Selenium) against `audiosim serve`.

Proves, on a synthetic collection (logmel) holding five distinct synthetic sounds, a byte-identical copy of one
and a near copy (trimmed, quieter) of another: the Duplicates view starts at the server's default threshold,
lists the identical group first and the near group after it, each member with its path, score and a player
that loads its audio; a higher threshold leaves only the identical group; a bad threshold is refused in words;
whatever a segment collection's answer is (groups, or an error), the view shows it readably and stops
waiting. The Map view draws one point per item with a legend, hovering names the file, clicking a point
gives the player that item's audio, "Search like this" runs the page's search by that item, and Back
returns to the map.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import audiosim
from browser_helpers import CHROMEDRIVER, CHROMIUM, WAIT_S, chromium, serving

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="Chromium and chromedriver are needed (apt-get install chromium chromium-driver)"),
]
pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'audiosim[serve]'")
pytest.importorskip("httpx", reason="httpx is not installed")

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from audiosim.engine.search.dedup import DEFAULT_THRESHOLD  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    """'dups': synthetic sounds with an identical copy (tone) and a near copy (chirp, 0.2 s trimmed, -2 dB);
    'long': a synthetic 20 s recording in 2 s segments."""
    import soundfile as sf

    from audiosim.engine.audio import synth

    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("views_sounds")
    sounds = {"chirp": synth.chirp(f0=300, f1=5000, duration_s=3.0, rng=rng),
              "clicks": synth.clicks(rate_hz=6, duration_s=3.0, rng=rng),
              "hum": synth.machine_hum(duration_s=3.0, rng=rng),
              "tone": synth.tone(freq=880, duration_s=3.0, harmonics=4),
              "pink": synth.noise(duration_s=3.0, color="pink", rng=rng)}
    for name, x in sounds.items():
        sf.write(folder / f"{name}.wav", x, SR)
    shutil.copy(folder / "tone.wav", folder / "tone_copy.wav")
    sf.write(folder / "chirp_near.wav", 0.8 * sounds["chirp"][int(0.2 * SR):], SR)
    base = tmp_path_factory.mktemp("views_coll")
    audiosim.index_folder(folder, base / "dups", embedder="logmel", label_from="none")

    rec = tmp_path_factory.mktemp("views_long")
    x = 0.05 * synth.noise(duration_s=20.0, color="pink", rng=rng)
    x[SR * 6:SR * 10] += 0.8 * synth.chirp(f0=300, f1=4000, duration_s=4.0, rng=rng)
    sf.write(rec / "field.wav", x.astype(np.float32), SR)
    audiosim.index_folder(rec, base / "long", embedder="logmel", segment_s=2.0, segment_hop_s=1.0)
    return {"dups": base / "dups", "long": base / "long"}


@pytest.fixture(scope="module")
def server(collections):
    with serving(collections) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"), flags=("--window-size=1280,1300",))
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, what):
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(d), message=f"waiting for {what}")


def open_view(driver, url, view):
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === '1'"), "the page to load")
    driver.find_element(By.ID, f"tab-{view}").click()
    wait(driver, lambda d: d.find_element(By.ID, f"view-{view}").is_displayed(), f"the {view} view")
    assert not driver.find_element(By.ID, "view-search").is_displayed()
    assert driver.current_url.endswith(f"#{view}")


def groups(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#dup-groups li.dup-group")


def run_duplicates(driver, collection, threshold=None):
    Select(driver.find_element(By.ID, "dup-collection")).select_by_value(collection)
    if threshold is not None:
        box = driver.find_element(By.ID, "dup-threshold")
        box.clear()
        box.send_keys(threshold)
    driver.find_element(By.ID, "dup-run").click()
    wait(driver, lambda d: not d.find_element(By.ID, "dup-busy").is_displayed()
         and (d.find_element(By.ID, "dup-summary").text or d.find_element(By.ID, "dup-message").is_displayed()),
         "the duplicates answer")


LOAD_AUDIO = """
const a = arguments[0], done = arguments[arguments.length - 1];
a.addEventListener('loadedmetadata', () => done({duration: a.duration}), {once: true});
a.addEventListener('error', () => done({error: a.error && a.error.code}), {once: true});
a.load();
"""


def test_duplicates_view_lists_identical_then_near_groups_with_players(server, browser):
    open_view(browser, server, "duplicates")
    assert float(browser.find_element(By.ID, "dup-threshold").get_attribute("value")) == DEFAULT_THRESHOLD
    run_duplicates(browser, "dups")
    assert not browser.find_element(By.ID, "dup-message").is_displayed(), browser.find_element(By.ID, "dup-message").text
    found = groups(browser)
    assert [g.get_attribute("data-kind") for g in found] == ["identical", "near"]
    names = [sorted(n.text.rsplit("/", 1)[-1] for n in g.find_elements(By.CSS_SELECTOR, ".dup-member .name")) for g in found]
    assert names == [["tone.wav", "tone_copy.wav"], ["chirp.wav", "chirp_near.wav"]]
    assert found[0].find_element(By.CSS_SELECTOR, ".kind").text == "Identical content"
    assert found[1].find_element(By.CSS_SELECTOR, ".kind").text == "Near-duplicates"
    assert "1 group of identical files, 1 group of near-duplicates" in browser.find_element(By.ID, "dup-summary").text
    for g in found:
        for member in g.find_elements(By.CSS_SELECTOR, "li.dup-member"):
            score = float(member.find_element(By.CSS_SELECTOR, ".score").text)
            assert DEFAULT_THRESHOLD <= score <= 1.0
            src = member.find_element(By.TAG_NAME, "audio").get_attribute("src")
            assert src.endswith(f"/api/collections/dups/items/{member.get_attribute('data-id')}/audio"), src
    state = browser.execute_async_script(LOAD_AUDIO, found[1].find_element(By.TAG_NAME, "audio"))
    assert "error" not in state and state["duration"] > 2.5, state

    run_duplicates(browser, "dups", "1")  # the near copy's audio agrees everywhere (score 1.0): still grouped
    assert [g.get_attribute("data-kind") for g in groups(browser)] == ["identical", "near"]

    box = browser.find_element(By.ID, "dup-threshold")
    box.clear()
    box.send_keys("2")
    browser.find_element(By.ID, "dup-run").click()
    message = browser.find_element(By.ID, "dup-message")
    wait(browser, lambda d: message.is_displayed() and message.text, "the threshold message")
    assert "between -1 and 1" in message.text


def test_duplicates_view_shows_a_segment_collections_answer_whatever_it_is(server, browser):
    open_view(browser, server, "duplicates")
    run_duplicates(browser, "long")
    message = browser.find_element(By.ID, "dup-message")
    if message.is_displayed():  # the server refuses segment collections: its words, no traceback, no stale groups
        assert message.text.strip() and "Traceback" not in message.text
        assert not groups(browser)
    else:  # the server answers with stretches of the recording: each member shown with a player
        summary = browser.find_element(By.ID, "dup-summary").text
        assert "No duplicates" in summary or groups(browser), summary
        for member in browser.find_elements(By.CSS_SELECTOR, "#dup-groups li.dup-member"):
            assert member.find_element(By.CSS_SELECTOR, ".name").text


def test_map_view_draws_one_point_per_item_plays_and_searches_like_it(server, browser, collections):
    open_view(browser, server, "map")
    Select(browser.find_element(By.ID, "map-collection")).select_by_value("dups")
    browser.find_element(By.ID, "map-run").click()
    size = len(audiosim.open_collection(collections["dups"]))
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#map-svg circle.point")) == size, "one point per item")
    assert not browser.find_element(By.ID, "map-message").is_displayed()
    points = browser.find_elements(By.CSS_SELECTOR, "#map-svg circle.point")
    ids = sorted(int(p.get_attribute("data-id")) for p in points)
    assert ids == sorted(int(i) for i in audiosim.open_collection(collections["dups"]).items().ids)
    assert all(p.is_displayed() for p in points)
    legend = browser.find_elements(By.CSS_SELECTOR, "#map-legend li")
    assert legend and all(li.text for li in legend)  # the cluster names with their sizes
    assert f"{size} points" in browser.find_element(By.ID, "map-summary").text
    assert browser.find_element(By.ID, "map-legend-title").text == "Clusters"  # no labels: coloured by cluster

    # a point drawn on top (an identical copy lies exactly under its original)
    top = next(p for p in points if browser.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === arguments[0];", p))
    item_id = top.get_attribute("data-id")
    ActionChains(browser).move_to_element(top).perform()
    wait(browser, lambda d: ".wav" in d.find_element(By.ID, "map-hover").text, "the hovered file")
    hovered = browser.find_element(By.ID, "map-hover").text
    top.click()
    wait(browser, lambda d: d.find_element(By.ID, "map-selected").is_displayed(), "the chosen point")
    src = browser.execute_script("return document.getElementById('map-player').src")
    assert src.endswith(f"/api/collections/dups/items/{item_id}/audio"), src
    assert browser.find_element(By.ID, "map-current").text == hovered
    state = browser.execute_async_script(LOAD_AUDIO, browser.find_element(By.ID, "map-player"))
    assert "error" not in state and state["duration"] > 2.5, state

    browser.find_element(By.ID, "map-search-like").click()
    wait(browser, lambda d: d.find_element(By.ID, "view-search").is_displayed()
         and d.find_elements(By.CSS_SELECTOR, "#results li.hit"), "the search by the chosen item")
    assert f"id={item_id}" in browser.current_url and "#map" not in browser.current_url
    assert browser.find_element(By.ID, "results-title").text.startswith("More like")
    assert f"(#{item_id})" in browser.find_element(By.ID, "results-title").text

    browser.back()  # Back: the map again, as it was drawn
    wait(browser, lambda d: d.find_element(By.ID, "view-map").is_displayed(), "the map view again")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map-svg circle.point")) == size


def test_map_view_refuses_a_bad_cluster_count_in_words(server, browser):
    open_view(browser, server, "map")
    box = browser.find_element(By.ID, "map-clusters")
    box.send_keys("0")
    browser.find_element(By.ID, "map-run").click()
    message = browser.find_element(By.ID, "map-message")
    wait(browser, lambda d: message.is_displayed() and message.text, "the clusters message")
    assert "1 to 50" in message.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#map-svg circle.point")
