"""The page: its static files ship in the wheel, and in headless Chromium it shows a run in training live,
its curves and samples, the playground, look inside and chat, and highlights copied text with its source."""

import fnmatch
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bricklm.studio import create_app
from bricklm.studio.inside import context_start
from conftest import PLANTED, TINY_FLAGS, serving

REPO = Path(__file__).resolve().parents[2]


def test_every_static_file_ships_in_the_wheel():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    def matches(path: str, pattern: str) -> bool:  # a setuptools glob: "*" stays within one folder
        parts, pat = path.split("/"), pattern.split("/")
        return len(parts) == len(pat) and all(fnmatch.fnmatch(a, b) for a, b in zip(parts, pat, strict=True))

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = REPO / "src" / "bricklm" / "studio"
    files = [p.relative_to(package).as_posix() for p in (package / "static").rglob("*") if p.is_file()]
    assert "static/index.html" in files and "static/vendor/uplot/LICENSE" in files
    missing = [f for f in files if not any(matches(f, pat) for pat in patterns["bricklm.studio"])]
    assert missing == [], f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"


def chromium():
    """A headless Chromium driven through Selenium and Debian's chromedriver, or a skip that says why not."""
    browser = next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        reason = "selenium is not installed (pip install -e '.[dev]')"
    else:
        reason = (
            None if browser and driver else "no Chromium and chromedriver (apt-get install chromium chromium-driver)"
        )
    if reason:
        print(f"skipping the page test: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,2100",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(driver))


@pytest.fixture(scope="module")
def live_training(runs_root, tiny_corpus):
    """`bricklm train` writing into the runs folder while the page looks at it; stopped with SIGTERM after."""
    run = runs_root / "live"
    flags = [f for f in TINY_FLAGS]
    for name, value in (("--max-iters", "100000"), ("--eval-interval", "40"), ("--n-layer", "2")):
        flags[flags.index(name) + 1] = value
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "bricklm",
        "train",
        "--data",
        str(tiny_corpus),
        "--out",
        str(run),
        *flags,
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while not list((run / "checkpoints").glob("step-*/manifest.json")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "training did not write a checkpoint"
        time.sleep(0.2)
    yield run
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


@pytest.mark.slow
def test_a_run_in_training_is_listed_running_and_served(http, live_training):
    row = next(r for r in http.get("/api/runs").json() if r["id"] == "live")
    assert row["status"] == "running" and row["step"] > 0 and row["max_iters"] == 100000
    first = row["checkpoints"]
    for _ in range(2):  # checkpoints keep appearing (and old ones pruned) while it is served
        r = http.post("/v1/completions", json={"model": "live", "prompt": "The ", "max_tokens": 5})
        assert r.status_code == 200, r.text
        r = http.post("/v1/completions", json={"model": "live@last", "prompt": "The ", "max_tokens": 5})
        assert r.status_code == 200, r.text
        time.sleep(1.5)
    row = next(r for r in http.get("/api/runs").json() if r["id"] == "live")
    assert row["checkpoints"] != first and row["tokens_per_s"] > 0 and row["eta_s"] > 0


@pytest.mark.slow
def test_the_page_shows_runs_live_curves_samples_playground_inside_and_chat(server, live_training, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    # The page redraws its tables and legend as the live run writes: an element read while it is replaced
    # is stale, so every read goes through a wait, which tries again rather than failing on that.
    wait = WebDriverWait(driver, 20, ignored_exceptions=(StaleElementReferenceException,))
    css = lambda sel: driver.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
    try:
        driver.get(server + "/")
        wait.until(lambda d: len(css("#runs tr.run")) >= 6)
        rows = wait.until(lambda d: [e.get_attribute("data-run") for e in css("#runs tr.run")])
        assert {"live", "tiny", "tiny-chat", "sweep/run-01", "sweep/run-02"} <= set(rows)
        assert "escape" not in rows
        assert wait.until(lambda d: css('#runs tr.run[data-run="live"] .status')[0].text) == "running"
        assert wait.until(lambda d: css('#runs tr.run[data-run="tiny"] .status')[0].text) == "finished"

        # Curves: the newest run (the live one) is drawn; a sweep overlays all its runs in one click.
        def live_points(d):
            found = css('#legend li[data-run="live"]')
            return int(found[0].get_attribute("data-points")) if found else 0

        wait.until(lambda d: live_points(d) > 0)
        first_look = wait.until(lambda d: live_points(d))
        assert css("#chart canvas"), "the chart was not drawn"
        wait.until(lambda d: live_points(d) > first_look)  # the curve grew without a reload
        assert "tokens/s" in wait.until(lambda d: d.find_element(By.ID, "progress").text)
        driver.find_element(By.CSS_SELECTOR, 'button[data-group="sweep"]').click()
        wait.until(
            lambda d: {e.get_attribute("data-run") for e in css("#legend li")} == {"sweep/run-01", "sweep/run-02"}
        )
        wait.until(lambda d: int(d.find_element(By.ID, "chart").get_attribute("data-points")) > 0)
        # Samples: one per evaluation of the focused run, beside its val loss.
        wait.until(lambda d: len(css("#samples li pre")) == 3)
        assert "val 3." in wait.until(lambda d: d.find_element(By.ID, "samples").text)

        # Playground: stream from a checkpoint, then look inside one generated character.
        driver.find_element(By.CSS_SELECTOR, '#pg-run option[value="tiny"]').click()
        driver.find_element(By.ID, "pg-prompt").send_keys("The ")
        length = driver.find_element(By.ID, "pg-length")
        length.clear()
        length.send_keys("40")
        driver.find_element(By.ID, "pg-go").click()
        wait.until(lambda d: len(css("#pg-output .tok")) == 40)
        css("#pg-output .tok")[30].click()
        wait.until(lambda d: len(css("#attention .head")) == 2)  # 1 layer x 2 heads
        assert (
            len(css("#lens tr.lens-row")) == 2
            and len(css("#lens tr.lens-row")[0].find_elements(By.CSS_SELECTOR, ".chip")) == 5
        )
        strip = css("#attention .head .strip")[0].find_elements(By.CSS_SELECTOR, "span")
        position = 4 + 30  # after the prompt's 4 tokens
        assert len(strip) == position - context_start(4, position, 16)  # the context the sampler had

        # Chat with the fine-tuned run.
        driver.find_element(By.CSS_SELECTOR, '#chat-run option[value="tiny-chat"]').click()
        driver.find_element(By.ID, "chat-input").send_keys("fox?")
        driver.find_element(By.ID, "chat-send").click()
        wait.until(lambda d: len(css("#chat-log li")) == 2 and d.find_element(By.ID, "chat-send").is_enabled())
        assert not css("#chat-log li.assistant")[0].text.startswith("error")

        # Back to the live run for the picture in the README.
        driver.find_element(By.CSS_SELECTOR, '#runs tr.run[data-run="live"] input').click()
        wait.until(lambda d: live_points(d) > 0)
        time.sleep(0.5)
        shot = driver.get_screenshot_as_png()
        assert shot.startswith(b"\x89PNG")
        # The README's picture: refreshed on request, so a test run doesn't leave the checkout modified.
        picture = REPO / "docs" / "studio.png" if os.environ.get("BRICKLM_REFRESH_DOCS") else tmp_path / "studio.png"
        picture.write_bytes(shot)
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_page_highlights_copied_text_and_shows_its_source(planted_runs):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    wait = WebDriverWait(driver, 20)
    css = lambda sel: driver.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
    app = create_app(planted_runs, allowed_hosts=["127.0.0.1", "localhost"])
    try:
        with serving(app) as url:
            driver.get(url + "/")
            wait.until(lambda d: css('#pg-run option[value="planted"]'))
            css('#pg-run option[value="planted"]')[0].click()
            wait.until(lambda d: css('#pg-ckpt option[value="last"]'))
            css('#pg-ckpt option[value="last"]')[0].click()  # the checkpoint that recites
            for field, value in (("pg-temperature", "0"), ("pg-length", "40")):
                box = driver.find_element(By.ID, field)
                box.clear()
                box.send_keys(value)
            driver.find_element(By.ID, "pg-prompt").send_keys(PLANTED[:28])
            driver.find_element(By.ID, "pg-go").click()
            wait.until(lambda d: len(css("#pg-output .tok")) == 40)
            marked = wait.until(lambda d: css("#pg-output .tok.copied"))
            assert PLANTED[28:] in "".join(t.get_attribute("textContent") for t in marked)  # the rest of the line
            marked[0].click()
            wait.until(lambda d: d.find_element(By.ID, "source-panel").is_displayed())
            source = wait.until(lambda d: d.find_element(By.ID, "source-text").get_attribute("textContent"))
            assert source and source in "\n".join([PLANTED] * 3)  # the span's own text, read from the training text
            assert ".txt" in driver.find_element(By.ID, "source-title").text
            assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
