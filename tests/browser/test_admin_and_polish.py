"""The profile panel, the manager's admin, the polish items and an axe-core
accessibility check, in headless Chromium against the live server.

With UPDATE_SCREENSHOTS=1 this module also refreshes docs/screenshots/
(inbox.png, thread.png, admin.png): see docs/operations.md.
"""
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from crm.services import add_customer_note
from inbox.models import RoutingRule
from tests.factories import make_user

from .conftest import screenshot
from .test_staff_screens import demo_inbox

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]

SERIOUS = ("serious", "critical")


def business():
    """The shared demo inbox (John Doe: 3 completed bookings and a party in 12 days, by
    SMS and email) with the people, the booking details, a note and a routing rule."""
    alice = make_user("alice", first_name="Alice", last_name="Kim")
    make_user("morgan", role="Manager", first_name="Morgan", last_name="Reyes")
    thread = demo_inbox()
    john = thread.customer
    john.bookings.update(address="18 Ocean Ave, Santa Monica, CA", total=Decimal("1240"), deposit=Decimal("300"))
    add_customer_note(customer=john, author=alice, body="Gate code 4411. Two guests are vegetarian.")
    RoutingRule.objects.create(name="After-hours SMS", order=10, conditions={"channel": ["sms"],
                               "business_hours": "outside"}, actions={"assign_round_robin": "Agent"})
    return thread


class Watch:
    """What the console and the network say while a page is used: CSP refusals,
    other console errors, and every response that is a 404."""

    def __init__(self, page):
        self.console, self.missing = [], []
        page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
        page.on("response", lambda r: r.status == 404 and self.missing.append(r.url))

    def assert_clean(self):
        csp = [m for m in self.console if "Content Security Policy" in m or "Refused to" in m]
        assert not csp, csp
        assert not self.missing, self.missing
        assert not self.console, self.console


def axe_problems(page):
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"] if v["impact"] in SERIOUS]


def test_pages_pass_axe_and_the_console_stays_clean(live, browser, sign_in):
    thread = business()
    # The log-in page, anonymous.
    context = browser.new_context(base_url=live.url)
    page = context.new_page()
    watch = Watch(page)
    page.goto("/login/")
    assert axe_problems(page) == []
    page.goto("/admin/login/")
    assert axe_problems(page) == []
    watch.assert_clean()
    context.close()

    morgan = sign_in("morgan")
    page = morgan.page
    watch = Watch(page)
    pages = ["/", f"/inbox/{thread.pk}/", "/admin/", "/admin/inbox/conversation/", "/admin/auth/user/",
             "/admin/auth/user/add/", "/admin/inbox/routingrule/add/",
             f"/admin/inbox/routingrule/{RoutingRule.objects.get().pk}/change/",
             f"/admin/crm/customer/{thread.customer_id}/change/"]
    for path in pages:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert axe_problems(page) == [], path
    watch.assert_clean()


def test_profile_panel_answers_the_customer_and_takes_a_note(live, sign_in):
    thread = business()
    alice = sign_in("alice")
    page = alice.page
    page.goto(f"/inbox/{thread.pk}/")
    profile = page.locator(".profile")
    expect(page.locator("#profile-bookings")).to_have_text("3 completed, 1 upcoming")
    booking = page.locator("#profile-next-booking")
    for text in ("18 Ocean Ave, Santa Monica, CA", "Guests 14", "Total $1,240.00", "Deposit paid $300.00",
                 "Balance due $940.00", "Confirmed"):
        expect(booking).to_contain_text(text)
    expect(profile).to_contain_text("Gate code 4411")
    expect(profile.get_by_role("link", name="Customer in admin")).to_have_count(0)  # agents have no admin
    page.get_by_label("Add a note about this customer").fill("Prefers a call after 5pm")
    page.get_by_role("button", name="Save note").click()
    expect(profile.locator(".note-list li").first).to_contain_text("Prefers a call after 5pm")
    expect(profile.locator(".note-list li").first).to_contain_text("Alice Kim")
    expect(page.get_by_label("Add a note about this customer")).to_have_value("")
    page.get_by_role("button", name="Save note").click()  # empty: refused next to the box
    expect(page.locator("#customer-note-error")).to_have_text("Write the note before saving it.")
    assert alice.page.url.endswith(f"/inbox/{thread.pk}/")  # no reload, no navigation

    morgan = sign_in("morgan")
    morgan.page.goto(f"/inbox/{thread.pk}/")
    morgan.page.get_by_role("link", name="Bookings in admin").click()
    expect(morgan.page.locator("#result_list tbody tr")).to_have_count(4)


def test_manager_adds_an_agent_and_edits_a_rule_with_choices(live, sign_in):
    business()
    morgan = sign_in("morgan")
    page = morgan.page
    page.goto("/admin/")
    expect(page.locator("#site-name")).to_have_text("My Hibachi admin")
    expect(page.get_by_role("link", name="Groups")).to_have_count(0)
    expect(page.get_by_role("link", name="Inbox events")).to_have_count(0)
    page.goto("/admin/auth/user/")
    expect(page.locator("#result_list")).to_contain_text("Alice Kim")
    expect(page.locator("#result_list thead")).to_contain_text("Role")
    expect(page.locator("#result_list thead")).not_to_contain_text("Staff status")
    page.get_by_role("link", name="Add agent").click()
    page.get_by_label("First name").fill("Dana")
    page.get_by_label("Last name").fill("Lee")
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Agent — works the inbox").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("A link to choose a password was sent to dana@example.com.")
    page.goto("/admin/auth/user/")
    row = page.locator("#result_list tbody tr", has_text="Dana Lee")
    expect(row).to_contain_text("Agent")

    page.goto("/admin/inbox/routingrule/")
    expect(page.locator("#result_list")).to_contain_text("SMS, outside business hours → assign Agents in turn")
    page.get_by_role("link", name="After-hours SMS").click()
    expect(page.get_by_label("SMS")).to_be_checked()
    page.locator("#toggle-nav-sidebar").click()  # the form, without the model list beside it
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "admin.png", docs=True)
    page.get_by_label("Chat").check()
    page.get_by_label("Gold").check()
    page.get_by_role("textbox", name="Words").fill("invoice, receipt")
    page.get_by_label("Assign to").select_option(label="Alice Kim")
    page.get_by_role("textbox", name="Add tags").fill("billing")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    rule = RoutingRule.objects.get()
    assert rule.conditions == {"channel": ["sms", "chat"], "keywords": {"words": ["invoice", "receipt"], "match": "any"},
                               "loyalty_tier": ["gold"], "business_hours": "outside"}
    assert rule.actions == {"assign_user": "alice", "add_tags": ["billing"]}


def test_dialog_focus_shortcut_name_notify_refusal_and_phone_tabs(live, sign_in):
    business()
    refuse = """
      (() => { let state = "default";
        Object.defineProperty(Notification, "permission", { get: () => state });
        Notification.requestPermission = () => { state = "denied"; return Promise.resolve("denied"); };
      })();"""
    alice = sign_in("alice", before_login=lambda page: page.add_init_script(refuse))
    page = alice.page
    watch = Watch(page)
    page.reload()
    shortcuts = page.get_by_role("button", name="Keyboard shortcuts")
    shortcuts.click()
    expect(page.locator("#shortcuts")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()
    expect(shortcuts).to_be_focused()
    # Opened with "?" from a row: focus goes back to that row.
    # The row is named by its conversation, not its place: a live update may move or
    # re-render it while the dialog is open, and focus must follow the conversation.
    row_id = page.locator("#rows > li.row").first.get_attribute("id")
    page.locator(f"#{row_id} .row-link").focus()
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    page.evaluate("id => document.getElementById(id).replaceWith(document.getElementById(id).cloneNode(true))", row_id)
    page.keyboard.press("Escape")
    expect(page.locator(f"#{row_id} .row-link")).to_be_focused()

    page.get_by_role("button", name="Notify me").click()
    expect(page.locator("#notify-toggle")).to_have_text("Notifications blocked")
    expect(page.locator("#notify-status")).to_contain_text("refused notifications")
    watch.assert_clean()

    phone = sign_in("alice", viewport={"width": 360, "height": 780})
    tabs = phone.page.locator(".tabs")
    expect(tabs).to_have_attribute("data-more", "right")
    assert phone.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    tabs.evaluate("t => t.scrollTo({left: t.scrollWidth})")
    expect(tabs).to_have_attribute("data-more", "left")
    screenshot(phone.page, "inbox-phone.png")


def test_docs_screenshots(live, sign_in):
    """The inbox and a thread as an agent sees them (docs/screenshots/ with UPDATE_SCREENSHOTS=1)."""
    thread = business()
    alice = sign_in("alice")
    alice.wait_live()
    expect(alice.page.locator("#rows > li.row")).to_have_count(3)
    screenshot(alice.page, "inbox.png", docs=True)
    alice.page.goto(f"/inbox/{thread.pk}/")
    alice.wait_live()
    expect(alice.page.locator("#profile-next-booking")).to_contain_text("Balance due")
    screenshot(alice.page, "thread.png", docs=True)
