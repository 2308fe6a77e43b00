"""The demo app in a real browser: the app serves a tiny random checkpoint on a free localhost port, the system's
headless Chromium (driven by selenium and the system ChromeDriver) uploads a sample image and presses the run
button, and the page shows the overlay, the score and the label. Skips with a reason where Chromium, ChromeDriver,
gradio or selenium is missing (CI installs them: Debian's chromium and chromium-driver, the `demo` extra)."""

from __future__ import annotations

import shutil
import socket
import urllib.request
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from genclip_hf.predict import load_detector

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1400",
)
TIMEOUT = 60
SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample_images" / "disc_hole.png"

for program in (CHROMIUM, CHROMEDRIVER):
    if not program.exists():
        pytest.skip(
            f"{program} is missing: apt-get install -y chromium chromium-driver to run the browser test",
            allow_module_level=True,
        )
gr = pytest.importorskip("gradio", reason="gradio is missing: pip install 'genclip-hf[demo]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is missing: pip install 'genclip-hf[demo]'")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from genclip_hf.demo import build_demo  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def detector(tiny_checkpoint_dir):
    return load_detector(str(tiny_checkpoint_dir), device="cpu")


@pytest.fixture(scope="module")
def app_url(detector):
    """The app served in a background thread of this process."""
    demo = build_demo(detector)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}"
    demo.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(TIMEOUT)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def text_of(driver, selector: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def test_upload_run_and_see_the_heatmap_score_and_label(detector, app_url, browser, tmp_path):
    expected = detector(str(SAMPLE), class_name="disc")
    wait = WebDriverWait(browser, TIMEOUT)
    browser.get(app_url)
    wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#run"))
    browser.find_element(By.CSS_SELECTOR, "#images input[type=file]").send_keys(str(SAMPLE))
    wait.until(lambda driver: SAMPLE.stem in text_of(driver, "#images"))  # the list shows "disc_hole" ".png"
    browser.find_element(By.CSS_SELECTOR, "#class-name textarea").send_keys("disc")
    browser.find_element(By.CSS_SELECTOR, "#run").click()

    wait.until(lambda driver: "1 of 1 images scored" in text_of(driver, "#status"))
    wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#heatmaps img"))
    score = f"{expected['score']:.4f}"
    caption = f"{SAMPLE.name}: {score} {expected['label']}"
    wait.until(lambda driver: caption in text_of(driver, "#heatmaps"))
    results = text_of(browser, "#results")
    assert score in results and expected["label"] in results and "method default" in results

    source = browser.find_element(By.CSS_SELECTOR, "#heatmaps img").get_attribute("src")
    assert source.startswith(app_url)
    with urllib.request.urlopen(source, timeout=TIMEOUT) as response:
        overlay = Image.open(BytesIO(response.read()))
        assert overlay.format == "PNG" and overlay.size == (2 * 224, 224)  # the image beside its overlay

    screenshot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(screenshot) as picture:
        picture.verify()


def test_errors_show_as_messages_on_the_page(app_url, browser, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    wait = WebDriverWait(browser, TIMEOUT)
    browser.get(app_url)
    wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#run"))
    browser.find_element(By.CSS_SELECTOR, "#images input[type=file]").send_keys(f"{SAMPLE}\n{broken}")
    wait.until(lambda driver: SAMPLE.stem in text_of(driver, "#images") and broken.stem in text_of(driver, "#images"))
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    wait.until(lambda driver: "1 of 2 images scored" in text_of(driver, "#status"))
    assert "could not read broken.png" in text_of(browser, "#status")

    for layer in browser.find_elements(By.CSS_SELECTOR, "#setting-feature_layers input[type=checkbox]"):
        layer.click()  # no layer left: an invalid setting
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    wait.until(lambda driver: "Error: feature_layers must be a non-empty list" in text_of(driver, "#status"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#heatmaps img")
    browser.save_screenshot(str(tmp_path / "error.png"))
