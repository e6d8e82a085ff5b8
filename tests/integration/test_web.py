"""The web page at ``/`` in headless Chromium (Debian's ``chromium`` and ``chromedriver``, driven
by Selenium), against a real worker and the API under gunicorn: a sentence typed and played
ends in a playable <audio>, a slow job shows its progress, a long text is heard from its first
sentence on, and errors read in plain words.

Selenium is given the driver and the browser binary, so selenium-manager never downloads
anything; the flags keep Chromium off the network (this machine has none).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from common.normalize import Normalizer
from harness import voice_factory
from harness.processes import start_api
from tests.support import CHROMEDRIVER, CHROMIUM, REPO, Stack, base_env, running_stack

FAST, SLOW, FRAGILE, IDLE = 1, 2, 3, 4  # IDLE: listed, but the worker does not serve it
pytestmark = pytest.mark.needs("Chromium")

SCREENSHOT = REPO / "var" / "reports" / "web.png"
API_KEY = "web-test-key-0123456789"

# True once the <audio> element has a source it can play: metadata read, a duration, no error.
AUDIO_PLAYABLE = """
const a = document.getElementById('audio');
return Boolean(a.getAttribute('src')) && a.readyState >= HTMLMediaElement.HAVE_METADATA
    && a.duration > 0 && a.error === null;
"""


@pytest.fixture(scope="module")
def web_voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fault voices (fast, slow, fragile) plus member 4, a copy of the fast voice that the
    worker is told not to serve."""
    root = voice_factory.build_fault_repository(tmp_path_factory.mktemp("web-voices"))
    idle = root / "voices" / "idle"
    shutil.copytree(root / "voices" / "fast", idle)
    manifest = (idle / "voice.json").read_text(encoding="utf-8")
    manifest = manifest.replace('"id": 1', f'"id": {IDLE}').replace('"Fast"', '"Idle"')
    (idle / "voice.json").write_text(manifest, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def stack(web_voices: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker serving members 1-3 and the API, on a queue prefix of this module's own."""
    logs = tmp_path_factory.mktemp("web-stack")
    env = base_env(
        voice_dir=str(web_voices),
        queue=f"moksori-web-{uuid.uuid4().hex[:8]}",
        storage_url=f"file://{logs / 'media'}",
        members=f"{FAST},{SLOW},{FRAGILE}",
        torch_threads="1",
    )
    with running_stack(env, logs) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile and nothing that calls out to the internet."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=900,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: webdriver.Chrome, condition: Callable[[], Any], timeout: float = 60) -> Any:
    """Wait for ``condition()`` to be truthy, showing the page's messages if it never is."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda _: condition())
    except Exception as exc:
        raise AssertionError(f"timed out; the page says: {page_messages(driver)}") from exc


def page_messages(driver: webdriver.Chrome) -> dict[str, str]:
    return {
        name: driver.find_element(By.ID, name).text for name in ("progress", "elapsed", "error")
    }


def open_page(driver: webdriver.Chrome, base: str) -> None:
    """Load the page and wait for its member list."""
    driver.get(base + "/")
    select = driver.find_element(By.ID, "member")
    wait_until(driver, lambda: select.get_attribute("data-loaded"), timeout=30)


def speak(driver: webdriver.Chrome, member_id: int, text: str) -> None:
    """Pick the member, type the text and press play, as a person would."""
    Select(driver.find_element(By.ID, "member")).select_by_value(str(member_id))
    box = driver.find_element(By.ID, "text")
    box.clear()
    if text:
        box.send_keys(text)
    driver.find_element(By.ID, "play").click()


def enter_key(driver: webdriver.Chrome) -> None:
    """Type the API key in its field, which the page opens when the API asks for one, and leave
    the field (that commits it); wait for the member list it opens."""
    key = driver.find_element(By.ID, "api-key")
    wait_until(driver, key.is_displayed, timeout=30)
    key.send_keys(API_KEY)
    driver.find_element(By.ID, "text").click()
    select = driver.find_element(By.ID, "member")
    wait_until(driver, lambda: select.get_attribute("data-loaded") == "true", timeout=30)


def error_text(driver: webdriver.Chrome) -> str:
    box = driver.find_element(By.ID, "error")
    return wait_until(driver, lambda: box.text, timeout=60)


def unique(text: str) -> str:
    """The text with a fresh number after it, so no earlier run's cached audio answers it.

    After, as a sentence of its own: in front, g2pK reads the number and the first word as one
    stretch of sound, and a reading that ends in ㄱ or ㅂ turns a following ㅎ into ㅋ or ㅍ
    ("…육 하늘이" -> "…유카느리"), which changes the text itself (for about 1 number in 5)."""
    return f"{text} {int.from_bytes(os.urandom(3), 'big')}."


# The progress of a text of several sentences while it is made.
SENTENCES_MADE = re.compile(r"합성 중… (\d+) / (\d+) 문장 / Synthesizing… \1 / \2 sentences")

# Installed in the page once loaded: every request body the page sends, kept in order.
RECORD_REQUESTS = """
window.sentBodies = [];
const send = window.fetch;
window.fetch = (url, options = {}) => {
    if (options.body) window.sentBodies.push(JSON.parse(options.body));
    return send(url, options);
};
"""


def last_sent(driver: webdriver.Chrome) -> dict[str, Any]:
    """The body of the last request the page sent (see RECORD_REQUESTS)."""
    bodies = driver.execute_script("return window.sentBodies")
    assert bodies, "the page sent no request body"
    return bodies[-1]


# The page's status polls, in the order they started (not its reads of a job's audio stream).
STATUS_POLLS = """
return performance.getEntriesByType('resource')
    .filter(e => e.name.includes('/api/jobs/') && !e.name.endsWith('/audio'))
"""


def last_job_id(driver: webdriver.Chrome) -> str:
    """The id of the last job the page followed, from its status polls."""
    polls = driver.execute_script(STATUS_POLLS + ".map(e => e.name)")
    assert polls, "the page polled no job"
    return polls[-1].rsplit("/", 1)[-1]


def test_page_and_assets_are_served(stack: Stack) -> None:
    """/ is HTML that loads only its own files; /web/ serves exactly those and refuses other
    names (a traversal attempt included) with the JSON error shape."""
    page = requests.get(f"{stack.base}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert 'src="/web/app.js"' in page.text and 'href="/web/style.css"' in page.text
    again = requests.get(f"{stack.base}/", headers={"If-None-Match": page.headers["ETag"]})
    assert again.status_code == 304
    script = requests.get(f"{stack.base}/web/app.js", timeout=10)
    assert script.status_code == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    for name in ("index.html", "..%2Fweb.py", "nope.js"):
        missing = requests.get(f"{stack.base}/web/{name}", timeout=10)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"


def test_favicon_and_docs_with_a_slash(stack: Stack) -> None:
    """/favicon.ico is a small icon, not a 404; /docs/ leads to Swagger UI at /docs."""
    icon = requests.get(f"{stack.base}/favicon.ico", timeout=10)
    assert icon.status_code == 200
    assert icon.headers["Content-Type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00" and len(icon.content) < 4096  # an ICO
    docs = requests.get(f"{stack.base}/docs/", timeout=10)
    assert docs.status_code == 200 and docs.url == f"{stack.base}/docs"
    assert [r.status_code for r in docs.history] == [308]
    assert "SwaggerUIBundle" in docs.text


def test_typed_sentence_plays(stack: Stack, browser: webdriver.Chrome) -> None:
    """A Korean sentence typed for a served member ends in a playable <audio> whose source is
    a WAV, and the status URL was polled with a growing delay; a screenshot is kept."""
    open_page(browser, stack.base)
    option = browser.find_element(By.CSS_SELECTOR, f'#member option[value="{FAST}"]')
    assert "Fast" in option.text and "served" in option.text
    speak(browser, FAST, unique("안녕하세요. 오늘은 날씨가 참 좋네요."))
    wait_until(browser, lambda: browser.execute_script(AUDIO_PLAYABLE), timeout=90)
    assert browser.find_element(By.ID, "error").text == ""
    assert "Done" in browser.find_element(By.ID, "progress").text

    src = browser.execute_script("return document.getElementById('audio').src")
    audio = requests.get(src, timeout=10)
    assert audio.status_code == 200
    assert audio.headers["Content-Type"] == "audio/wav"
    assert audio.content[:4] == b"RIFF" and audio.content[8:12] == b"WAVE"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 1000


def test_slow_job_shows_progress(stack: Stack, browser: webdriver.Chrome) -> None:
    """While a slow synthesis runs the page says it is synthesizing, counts the sentences made
    and the seconds, and it polls the job with a growing delay (never hammering), then offers
    the audio."""
    open_page(browser, stack.base)
    sentences = " ".join(f"바다와 구름을 {n}번 봅니다." for n in range(1, 5))
    speak(browser, SLOW, unique(sentences))
    seen: set[str] = set()
    elapsed: set[str] = set()
    deadline = time.monotonic() + 120
    while not browser.execute_script(AUDIO_PLAYABLE):
        assert time.monotonic() < deadline, page_messages(browser)
        messages = page_messages(browser)
        assert messages["error"] == "", messages
        seen.add(messages["progress"])
        elapsed.add(messages["elapsed"])
        time.sleep(0.05)
    counts = {m.groups() for text in seen if (m := SENTENCES_MADE.fullmatch(text))}
    assert len(counts) >= 2 and {total for _, total in counts} == {"5"}, seen  # it counted up
    assert any(text.endswith("s elapsed") and not text.startswith("0.0") for text in elapsed)

    polls = browser.execute_script(STATUS_POLLS + ".map(e => e.startTime)")
    assert len(polls) >= 2, polls
    gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
    assert min(gaps) >= 200, gaps  # the first delay is 250 ms, and it only grows
    assert max(gaps) <= 4000, gaps  # capped at 2 s, plus the time each answer takes


def test_long_text_plays_from_its_first_sentence(
    stack: Stack, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """With API keys on, a text of six sentences for the slow voice is heard in the page while
    its later sentences are still being made (the page reads the job's audio stream with its
    key, which an <audio src> could not send), all of it; then the page offers the whole WAV."""
    api, base = start_api({**stack.env, "MOKSORI_API_KEYS": API_KEY}, tmp_path)
    key = {"Authorization": f"Bearer {API_KEY}"}
    try:
        browser.get(base + "/")
        enter_key(browser)
        sentences = " ".join(f"하루에 {n}번 웃어요." for n in range(1, 6))
        speak(browser, SLOW, unique(sentences))

        line = browser.find_element(By.ID, "stream")
        wait_until(browser, lambda: float(line.get_attribute("data-heard") or 0) > 0, timeout=120)
        job_id = last_job_id(browser)
        running = requests.get(f"{base}/api/jobs/{job_id}", headers=key, timeout=10).json()
        assert running["status"] == "running", running
        assert running["sentences_done"] < running["sentences_total"] == 6, running
        assert SENTENCES_MADE.fullmatch(browser.find_element(By.ID, "progress").text)
        assert line.is_displayed() and line.get_attribute("data-state") == "playing"

        whole = browser.find_element(By.ID, "download")
        wait_until(browser, whole.is_displayed, timeout=120)
        view = requests.get(f"{base}/api/jobs/{job_id}", headers=key, timeout=10).json()
        assert view["status"] == "done" and view["sentences_done"] == 6, view
        assert whole.get_attribute("href") == view["url"]
        assert browser.execute_script("return document.getElementById('audio').src") == view["url"]
        assert "whole WAV" in browser.find_element(By.ID, "progress").text
        assert browser.find_element(By.ID, "error").text == ""

        # Heard to its end: every sample of the job's WAV was played (gaps, where the text was
        # made slower than it is spoken, only add to the time heard).
        wait_until(browser, lambda: line.get_attribute("data-state") == "ended", timeout=120)
        assert float(line.get_attribute("data-heard")) >= view["duration_s"] - 0.1, view
        assert not line.is_displayed()
    finally:
        browser.execute_script("localStorage.clear()")
        api.stop()


def test_errors_in_plain_words(stack: Stack, browser: webdriver.Chrome) -> None:
    """Empty text, a member no worker serves, a synthesis that fails and a server that cannot
    be reached each show a plain sentence, and the page stays usable."""
    open_page(browser, stack.base)
    idle = browser.find_element(By.CSS_SELECTOR, f'#member option[value="{IDLE}"]')
    assert "no worker" in idle.text

    speak(browser, FAST, "")
    assert "Type a sentence first" in error_text(browser)

    speak(browser, IDLE, "안녕하세요.")
    assert "No worker serves this voice" in error_text(browser)
    assert browser.find_element(By.ID, "error").get_attribute("data-code") == "member_unavailable"

    # The fragile voice has NaN weights for every syllable starting with ㅎ: it fails on a text
    # whose reading keeps one, and only then.
    text = unique("하늘이 맑습니다.")
    reading = Normalizer().sentences(text, voice_factory.SYLLABLES)
    hieuh = set(voice_factory.HIEUH_SYLLABLES)
    assert any(ch in hieuh for sentence in reading for ch in sentence), (
        f"the reading {reading} keeps no syllable with ㅎ: the fragile voice would not fail"
    )
    browser.execute_script(RECORD_REQUESTS)
    speak(browser, FRAGILE, text)
    progress = browser.find_element(By.ID, "progress")
    wait_until(browser, lambda: progress.get_attribute("data-status") in {"done", "error"})
    sent = last_sent(browser)
    assert sent == {"member_id": FRAGILE, "text": text}, f"the page sent {sent}"
    job = requests.get(f"{stack.base}/api/jobs/{last_job_id(browser)}", timeout=10).json()
    assert job["status"] == "failed", job
    assert job["error"].startswith("Sentence 1 of 2 failed"), job
    shown = error_text(browser)
    assert "The synthesis failed" in shown and job["error"] in shown

    browser.set_network_conditions(
        offline=True, latency=0, download_throughput=-1, upload_throughput=-1
    )
    try:
        speak(browser, FAST, "안녕하세요.")
        assert "Could not reach the server" in error_text(browser)
    finally:
        browser.delete_network_conditions()
    assert browser.find_element(By.ID, "play").is_enabled()


def marks_explained(driver: webdriver.Chrome, base: str) -> set[str]:
    """Load the page; assert each mark its voice list shows has a legend entry in Korean and
    in English; return the marks shown."""
    open_page(driver, base)
    options = driver.find_elements(By.CSS_SELECTOR, "#member option")
    shown = {option.text.rsplit("— ", 1)[1][0] for option in options}
    legend = {
        item.get_attribute("data-mark"): item.text
        for item in driver.find_elements(By.CSS_SELECTOR, "#member-legend li")
    }
    for mark in shown:
        text = legend.get(mark, "")
        assert text.startswith(mark), (mark, legend)
        korean = next(i for i, ch in enumerate(text) if "가" <= ch <= "힣")
        english = next(i for i, ch in enumerate(text) if ch.isascii() and ch.isalpha())
        assert korean < english, text  # Korean first, English after
    assert driver.find_element(By.ID, "member-legend").is_displayed()
    return shown


def test_every_mark_is_explained(
    stack: Stack, web_voices: Path, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """The voice list's marks each have a legend entry in plain words: ✓ and ✗ on RabbitMQ,
    and ? on the embedded broker, which cannot count consumers."""
    assert marks_explained(browser, stack.base) == {"✓", "✗"}
    env = base_env(
        voice_dir=str(web_voices),
        broker_url="filesystem://",
        broker_dir=str(tmp_path / "broker"),
        storage_url=f"file://{tmp_path / 'media'}",
    )
    api, base = start_api(env, tmp_path)
    try:
        assert marks_explained(browser, base) == {"?"}
    finally:
        api.stop()


def test_api_key_is_asked_for_and_kept(
    web_voices: Path, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """With MOKSORI_API_KEYS set the page says a key is needed; once typed, the member list
    loads and the key is kept in localStorage across a reload."""
    env = base_env(
        voice_dir=str(web_voices),
        queue=f"moksori-web-{uuid.uuid4().hex[:8]}",
        storage_url=f"file://{tmp_path / 'media'}",
        api_keys=API_KEY,
    )
    api, base = start_api(env, tmp_path)
    try:
        browser.get(base + "/")
        assert "needs an API key" in error_text(browser)
        assert browser.find_element(By.ID, "api-key").is_displayed()  # opened for it
        enter_key(browser)
        assert browser.find_element(By.ID, "error").text == ""
        assert len(Select(browser.find_element(By.ID, "member")).options) == 4

        open_page(browser, base)
        assert browser.find_element(By.ID, "member").get_attribute("data-loaded") == "true"
        assert browser.find_element(By.ID, "api-key").get_attribute("value") == API_KEY
    finally:
        browser.execute_script("localStorage.clear()")
        api.stop()
