"""A live daphne server of the app and headless Chromium, shared by the
browser tests of one run. Needs PostgreSQL (the server is another process and
reads the test database) and Redis (events raised in this process reach the
server's sockets through channels-redis)."""
import os

import pytest
from django.conf import settings

from tests.screenshots import ARTIFACTS, save as save_picture

from .live_server import LiveServer, database_url

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PASSWORD = "pw-for-tests-1"


@pytest.fixture(scope="session")
def live_server_process(django_db_setup, django_db_blocker):
    ARTIFACTS.mkdir(exist_ok=True)
    with django_db_blocker.unblock():
        server = LiveServer(database_url=database_url(), redis_url=settings.REDIS_URL,
                            log_path=ARTIFACTS / "live-server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live(live_server_process, transactional_db, settings):
    """The live server, with this process sharing its channel layer and cache."""
    for name, value in live_server_process.settings_overrides().items():
        setattr(settings, name, value)
    from django.core.cache import cache

    cache.clear()
    return live_server_process


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Module scope: Playwright's sync API keeps an event loop running on this
    # thread while it is open, which would trip later asyncio tests.
    # Playwright's sync API keeps an event loop on this thread; the ORM calls
    # the tests make between browser steps are still plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield chromium
        chromium.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Session:
    """One signed-in person in their own browser context; collects page errors."""

    def __init__(self, browser, live, username, *, viewport=None, before_login=None):
        self.context = browser.new_context(viewport=viewport or {"width": 1280, "height": 860},
                                           base_url=live.url, locale="en-US", timezone_id="America/Los_Angeles")
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", lambda dialog: (self.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        if before_login:
            before_login(self.page)
        self.page.goto("/login/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(f"{live.url}/")

    def wait_live(self):
        from playwright.sync_api import expect

        expect(self.page.locator("#live-status")).to_have_attribute("data-state", "live")
        # Live means caught up too: the read of what happened before the socket opened has been
        # applied, so an event a test raises next reaches the page by the socket, not by that read.
        self.page.wait_for_function("() => !(window.inboxLive && window.inboxLive.catching)")

    def api(self, path):
        response = self.page.request.get(path)
        assert response.ok, (path, response.status, response.text()[:300])
        return response.json()

    def close(self):
        self.context.close()


@pytest.fixture
def sign_in(browser, live):
    sessions = []

    def _sign_in(username, **kwargs):
        session = Session(browser, live, username, **kwargs)
        sessions.append(session)
        return session

    yield _sign_in
    for session in sessions:
        session.close()
    errors = [e for s in sessions for e in s.errors]
    assert not errors, errors


def screenshot(page, name, *, docs=False):
    """Always a test artefact; the README's copy in docs/screenshots/ only with
    UPDATE_SCREENSHOTS=1 (tests/screenshots.py)."""
    save_picture(name, lambda path: page.screenshot(path=str(path), full_page=False), docs=docs)


def in_thread(fn, *args, **kwargs):
    """Run a service call on a worker thread and return its result.

    Playwright's sync API keeps an asyncio loop running on the test's thread,
    and the services publish events with async_to_sync, which refuses to run
    on a thread with a running loop. The worker has its own database
    connection; the test database is transactional, so it sees everything.
    """
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    def run():
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=30)
