"""Fixtures of the browser suite: a real Server1 process, Debian's Chromium, a fake worker.

Server1 runs as `python -m server1` on 127.0.0.1 (harness/server1.py) with a temporary SHARED_DIR in local
mode (no SAGEMAKER_ENDPOINT, no INFERENCE_URL): nobody processes jobs but the test's
FakeWorker, which uses the real job protocol, so every state change is the test's doing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page
from playwright.sync_api import Error as PlaywrightError

from harness import REPO
from harness.browser import DESKTOP
from harness.server1 import USERS, Server

ARTIFACTS = REPO / "test-artifacts" / "ui"
USER = "alice"
PASSWORD = USERS[USER]
REFUSED_CAPTURE = "Unable to capture screenshot"


def shot(page: Page, artifacts: Path, name: str, full_page: bool = False) -> None:
    """test-artifacts/ui/<name>.png, to look at. Chromium now and then refuses one capture under load
    (REFUSED_CAPTURE; robotframework-browser issue 5237 has the statistics) and takes it once the page has
    drawn another frame: that one error is asked again after a frame, any other fails the test."""
    path = artifacts / f"{name}.png"
    try:
        page.screenshot(path=path, full_page=full_page)
    except PlaywrightError as e:
        if REFUSED_CAPTURE not in str(e):
            raise
        page.evaluate("() => new Promise((done) => requestAnimationFrame(() => done()))")
        page.screenshot(path=path, full_page=full_page)


def start_server(tmp: Path) -> Server:
    """Server1 on a fresh SHARED_DIR, in local mode, its event stream polling often."""
    return Server(str(tmp / "shared"), EVENTS_POLL_SECONDS="0.3").start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("ui"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@dataclass
class Problems:
    """Console errors and failed page loads: a CSP violation (inline script, inline style
    attribute, a CDN) shows up here, so every test ends by checking there were none."""

    messages: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # substrings of errors a test provokes on purpose

    def add(self, text: str) -> None:
        if not any(a in text for a in self.allowed):
            self.messages.append(text)


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def page(browser: Browser, problems: Problems) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.add(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.add(f"page error: {error}"))
    yield page
    context.close()
    assert not problems.messages, "the page reported problems:\n" + "\n".join(problems.messages)


@pytest.fixture
def login(server: Server) -> Callable[[Page], None]:
    def do(page: Page) -> None:
        page.goto(server.url + "/login")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(server.url + "/")
        page.locator("#album-summary").filter(has_not_text="Loading").wait_for()

    return do
