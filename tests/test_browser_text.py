"""The page's text box in a real browser (headless Chromium via Selenium): describing a sound finds it in a
collection embedded by a tiny CLAP trained in the test; a collection without a text encoder shows why not."""

from __future__ import annotations


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
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'audiosim[models]')")
httpx = pytest.importorskip("httpx")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from test_text_search import clap_collection, clap_dir  # noqa: E402,F401  (the fixtures: a trained tiny CLAP)


@pytest.fixture(scope="module")
def logmel_collection(tmp_path_factory):
    from audiosim.engine.audio.synth import write_demo_folder

    d = tmp_path_factory.mktemp("sounds")
    write_demo_folder(d, per_kind=2, seed=3)
    root = tmp_path_factory.mktemp("coll") / "logmel"
    audiosim.index_folder(d, root, embedder="logmel")
    return root


@pytest.fixture(scope="module")
def server(clap_collection, logmel_collection):  # noqa: F811
    with serving({"clap": clap_collection, "logmel": logmel_collection}) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"), flags=("--window-size=1180,1200",))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, what):
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(d), message=f"waiting for {what}")


def _search_text(driver, collection: str, text: str) -> None:
    Select(driver.find_element(By.ID, "collection")).select_by_value(collection)
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "search-text").click()


def test_text_box_finds_the_described_sound(browser, server):
    browser.get(server)
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === '1'"), "the page")
    _search_text(browser, "clap", "a dog barking")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results li.hit"), "results")
    first = browser.find_elements(By.CSS_SELECTOR, "#results li.hit")[0]
    assert "dog_0.wav" in first.find_element(By.CSS_SELECTOR, ".name").text
    assert "a dog barking" in browser.find_element(By.ID, "results-title").text


def test_text_box_on_a_collection_without_text_encoder_says_why(browser, server):
    browser.get(server)
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === '1'"), "the page")
    _search_text(browser, "logmel", "a dog barking")
    message = browser.find_element(By.ID, "message")
    _wait(browser, lambda d: message.is_displayed() and message.text, "the error message")
    assert "no text encoder" in message.text and "CLAP" in message.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#results li.hit")
