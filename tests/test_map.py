"""The collection map (issue 23, item 4): 2-D projection, clusters named, one point per item in a real browser.

Proves: ``audiosim map`` writes an HTML page whose SVG holds one point per stored vector with its
file, coloured by label (a labelled collection) and clusters named by their labels; clicking a
point plays it (the page's player gets its file); it opens in headless Chromium (Selenium) when
Chromium and chromedriver are installed; an empty collection is a clear error.
"""

from __future__ import annotations


import pytest
from click.testing import CliRunner

import audiosim
from audiosim.cli import main
from audiosim.engine.search.atlas import collection_map
from browser_helpers import CHROMEDRIVER, CHROMIUM, chromium



@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    from audiosim.engine.audio.synth import write_demo_folder

    base = tmp_path_factory.mktemp("map")
    write_demo_folder(base / "demo", per_kind=4, seed=0)  # synthetic: 5 kinds x 4
    coll = base / "coll"
    audiosim.index_folder(base / "demo", coll, embedder="logmel")
    out = base / "map.html"
    r = CliRunner().invoke(main, ["map", "--collection", str(coll), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return coll, out, r.output


def test_the_map_holds_one_point_per_item_and_names_clusters(mapped):
    coll, out, printed = mapped
    c = audiosim.open_collection(coll)
    text = out.read_text()
    assert text.count('class="point"') == len(c) == 20
    for p in c.files():
        assert f'data-path="{p}"' in text
    m = collection_map(c)
    assert m.xy.shape == (20, 2) and len(set(m.cluster.tolist())) == len(m.cluster_names) >= 2
    kinds = {"chirp", "clicks", "hum", "noise", "tone"}
    assert all(set(n.split(" / ")) <= kinds for n in m.cluster_names)  # named by the commonest labels
    assert "wrote" in printed and "clusters" in printed


def test_an_empty_collection_is_a_clear_error(tmp_path, demo_folder):
    coll = tmp_path / "c"
    audiosim.index_folder(demo_folder, coll, embedder="logmel")
    c = audiosim.open_collection(coll)
    c.delete(ids=[int(i) for i in c.items().ids])
    r = CliRunner().invoke(main, ["map", "--collection", str(coll), "--out", str(tmp_path / "m.html")])
    assert r.exit_code == 2 and "holds no vectors" in r.output and "Traceback" not in r.output


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="Chromium and chromedriver are not installed")
def test_the_map_opens_in_a_real_browser_with_one_point_per_item(mapped, tmp_path):
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.common.by import By

    coll, out, _ = mapped
    driver = chromium(tmp_path / "profile")
    try:
        driver.get(out.as_uri())
        points = driver.find_elements(By.CSS_SELECTOR, "circle.point")
        assert len(points) == len(audiosim.open_collection(coll)) == 20
        assert all(p.is_displayed() for p in points)
        points[3].click()
        path = points[3].get_attribute("data-path")
        assert driver.find_element(By.ID, "current").text == path
        assert driver.execute_script("return document.getElementById('player').src").endswith(path.split("/")[-1])
    finally:
        driver.quit()
