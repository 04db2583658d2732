"""The web page in a real headless Chromium (Debian's chromium + chromedriver, driven with
Selenium) against a real server: upload an image, see K results, mark hits (stored by the
service), see the marks again after a reload, export them. A screenshot of the page goes to
work/screenshots/search_page.png."""

from __future__ import annotations

import csv
import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from echoseek.service.config import ServiceConfig
from echoseek.service.run import start_service
from tests.service.conftest import PIXELS, frame, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "work" / "screenshots" / "search_page.png"


@pytest.fixture(scope="module")
def page_url(
    service_index: Path, service_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    cfg = ServiceConfig(
        index=str(service_index),
        dataset=str(service_dataset),
        pixel_size=PIXELS,
        port=free_port(),
        feedback=str(tmp_path_factory.mktemp("page") / "feedback.jsonl"),
    )
    running = start_service(cfg, use_ray=False)
    yield running.url
    running.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(tmp_path), "download.prompt_for_download": False},
    )
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait_for(condition: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the page")


def search_for(browser: Any, page_url: str, query: Path) -> list[Any]:
    from selenium.webdriver.common.by import By

    browser.get(page_url + "/")
    info = browser.find_element(By.ID, "index-info")
    wait_for(lambda: "index v" in info.text)
    assert "60 items" in info.text and "model pixels" in info.text
    k = browser.find_element(By.ID, "k")
    k.clear()
    k.send_keys("8")
    browser.find_element(By.ID, "file").send_keys(str(query))
    cards: list[Any] = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#grid .hit"))
    return cards


def test_upload_mark_reload_and_export(browser, page_url, service_dataset, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    query = tmp_path / "query.png"
    Image.fromarray(frame(service_dataset, 5)).save(query)
    cards = search_for(browser, page_url, query)
    assert len(cards) == 8
    assert "8 results for query.png" in browser.find_element(By.ID, "status").text
    first = cards[0].find_element(By.CSS_SELECTOR, ".frame").text
    assert first == "5"  # the frame itself ranks first
    anomaly = wait_for(lambda: browser.find_element(By.ID, "anomaly").text)
    assert anomaly.startswith("anomaly score 0.") and "percentile" in anomaly, anomaly
    wait_for(
        lambda: all(
            c.find_element(By.TAG_NAME, "img").get_attribute("src").startswith("blob:")
            for c in cards
        )
    )
    count = browser.find_element(By.ID, "mark-count")
    assert count.text == "0 marks stored for this index"
    second = cards[1]
    second.find_element(By.CSS_SELECTOR, ".mark-negative").click()
    wait_for(lambda: "negative" in second.get_attribute("class"))
    cards[0].find_element(By.CSS_SELECTOR, ".mark-positive").click()
    wait_for(lambda: count.text == "2 marks stored for this index")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    first_id, second_id = (c.get_attribute("data-id") for c in cards[:2])

    # a new page load: the same search shows the stored marks
    cards = search_for(browser, page_url, query)
    wait_for(lambda: "positive" in cards[0].get_attribute("class"))
    assert "negative" in cards[1].get_attribute("class")
    assert all(c.get_attribute("class") == "hit" for c in cards[2:])
    assert browser.find_element(By.ID, "mark-count").text == "2 marks stored for this index"

    browser.find_element(By.ID, "export").click()
    path = wait_for(lambda: next(iter(tmp_path.glob("feedback*.csv")), None))
    time.sleep(0.2)  # the download completes
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert [(r["id"], r["mark"], r["label"]) for r in rows] == [
        (second_id, "negative", "0"),
        (first_id, "positive", "1"),
    ]
    digest = hashlib.sha256(query.read_bytes()).hexdigest()
    assert all(r["query"] == f"sha256:{digest}" and r["item"] for r in rows)
    assert Image.open(SCREENSHOT).size[0] >= 1000
