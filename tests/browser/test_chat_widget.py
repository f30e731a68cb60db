"""The website chat widget in a real browser: a page on the business's website (another origin)
embeds it with one script tag; a visitor writes, staff see it, type and reply from the inbox, and
the reply appears live in the visitor's panel; history survives a reload; a page on an origin
that is not allowed gets no chat."""
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from inbox.models import Message
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]



class Website:
    """The business's website: a real HTTP server on loopback serving one page with the widget's tag.

    Real, not a routed page: Chromium lets only pages of the loopback address space load from the
    loopback live server (Private Network Access)."""

    def __init__(self, live, host):
        page = (f'<!doctype html><html lang="en"><head><title>My Hibachi</title></head><body><h1>Hibachi at home</h1>'
                f'<script src="{live.url}/static/chat/widget.js" defer data-title="Chat with us"></script>'
                f'</body></html>').encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name):
        return f"http://{name}:{self.server.server_address[1]}/"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site(live):
    """Served on 127.0.0.1, visited as http://localhost:<port>: another origin than the live server's,
    and allowed (CHAT_ALLOWED_ORIGINS is empty in the live settings: ALLOWED_HOSTS, i.e. localhost)."""
    server = Website(live, "127.0.0.1")
    yield server.url("localhost")
    server.stop()


@pytest.fixture
def foreign_site(live):
    """A page on http://127.0.0.2:<port>: loopback too, but not an allowed origin."""
    server = Website(live, "127.0.0.2")
    yield server.url("127.0.0.2")
    server.stop()


def website(browser, url, viewport=None):
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 860}, locale="en-US")
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return context, page, errors


def test_a_visitor_chats_and_a_staff_reply_arrives_live(live, browser, sign_in, site):
    make_user("alice", first_name="Alice", last_name="Hidden-Surname")
    context, visitor, errors = website(browser, site)
    launcher = visitor.get_by_role("button", name="Chat with us")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    launcher.click()
    panel = visitor.get_by_role("dialog", name="Chat with us")
    expect(panel).to_be_visible()
    expect(visitor.locator("#myhibachi-chat")).to_have_attribute("data-state", "live")
    visitor.get_by_label("Your message").fill("<b>Hi</b> do you have a chef on May 3?")
    visitor.keyboard.press("Enter")
    line = visitor.locator(".mhc-visitor").last
    expect(line).to_have_text("<b>Hi</b> do you have a chef on May 3?")  # HTML shown as text
    expect(line).not_to_have_class(re.compile("mhc-pending"))
    visitor.locator(".mhc-details summary").click()
    visitor.get_by_label("Name").fill("<script>alert('x')</script>")
    visitor.get_by_label("Email").fill("kim@example.com")
    visitor.get_by_role("button", name="Save").click()
    expect(visitor.locator(".mhc-status")).to_have_text("Thanks, we have your details.")

    conversation = Message.objects.get(text__startswith="<b>Hi</b>").conversation
    alice = sign_in("alice")
    staff = alice.page
    staff.goto(f"/inbox/{conversation.pk}/")
    expect(staff.locator("#thread-items")).to_contain_text("<b>Hi</b> do you have a chef on May 3?")
    expect(staff.locator("#reply-channel")).to_have_value("chat")
    staff.locator("#reply-text").press_sequentially("Yes! ")
    expect(visitor.locator(".mhc-typing")).to_have_text("Alice is typing…")
    staff.locator("#reply-text").fill("Yes! How many guests?")
    staff.get_by_role("button", name="Send reply").click()

    reply = visitor.locator(".mhc-staff").last
    expect(reply).to_contain_text("Yes! How many guests?", timeout=5_000)
    expect(reply.locator(".mhc-who")).to_have_text("Alice")
    expect(visitor.locator(".mhc-typing")).to_have_text("")
    assert "Hidden-Surname" not in visitor.content()

    # History survives a reload: the token is in localStorage.
    visitor.reload()
    visitor.get_by_role("button", name="Chat with us").click()
    expect(visitor.locator(".mhc-line")).to_have_count(2)
    expect(visitor.locator(".mhc-staff")).to_contain_text("Yes! How many guests?")
    token = visitor.evaluate("localStorage.getItem('myhibachi-chat-token')")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert not Message.objects.filter(metadata__icontains=token).exists()
    assert errors == []
    context.close()


def test_the_panel_fills_a_phone_screen_and_closes_with_escape(live, browser, site):
    context, visitor, errors = website(browser, site, viewport={"width": 375, "height": 667})
    visitor.get_by_role("button", name="Chat with us").click()
    panel = visitor.get_by_role("dialog", name="Chat with us")
    box = panel.bounding_box()
    assert (box["width"], box["height"]) == (375, 667)
    expect(visitor.get_by_label("Your message")).to_be_focused()
    visitor.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(visitor.get_by_role("button", name="Chat with us")).to_be_focused()
    assert errors == []
    context.close()


def test_a_page_on_an_origin_not_allowed_gets_no_chat(live, browser, foreign_site):
    context, visitor, errors = website(browser, foreign_site)
    visitor.get_by_role("button", name="Chat with us").click()
    expect(visitor.locator(".mhc-status")).to_have_text("Chat is not available right now.", timeout=20_000)
    assert not Message.objects.exists()
    context.close()
