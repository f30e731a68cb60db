"""The staff screens in a real browser (Chromium via Playwright) against a live
daphne server of the app, with live updates over channels-redis."""
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from crm.models import Booking
from inbox import services
from inbox.models import CannedResponse, Conversation
from tests.factories import make_customer, make_user

from .conftest import in_thread, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]

LIVE_WITHIN_MS = 2_000


def receive(sender, text, channel="email", **extra):
    extra.setdefault("external_id", f"{channel}-{sender}-{text[:20]}")
    return in_thread(services.receive_message, channel=channel, sender=sender, text=text, **extra)


def demo_inbox():
    """A small, realistic inbox: several customers, every channel, one pending."""
    john = make_customer("john.doe@example.com", first_name="John", last_name="Doe", phone="+1 415 555 0100")
    for n in range(3):
        Booking.objects.create(customer=john, event_at=timezone.now() - timedelta(days=90 * (n + 1)), guest_count=10,
                               status=Booking.Status.COMPLETED)
    Booking.objects.create(customer=john, event_at=timezone.now() + timedelta(days=12), guest_count=14,
                           status=Booking.Status.CONFIRMED)
    receive("+1 415 555 0100", "Hi! Is the chef available on the 14th for 14 guests?", channel="sms",
            received_at=timezone.now() - timedelta(hours=3))
    first = receive("john.doe@example.com", "Also, can we add a vegetarian menu for two?\n\nOn Mon, John wrote:\n> old",
                    subject="Birthday party", html="<p>Also, can we add a <b>vegetarian</b> menu for two?</p>"
                    "<blockquote>On Mon, John wrote: earlier message</blockquote>",
                    received_at=timezone.now() - timedelta(minutes=5))
    receive("maria@example.com", "Do you travel to San Jose?", sender_name="Maria Lopez",
            received_at=timezone.now() - timedelta(minutes=40))
    receive("+1 650 555 0199", "Missed call, 0:42", channel="call", sender_name="Sam Lee",
            received_at=timezone.now() - timedelta(hours=1))
    pending = receive("kim@example.com", "Let me check with my husband and get back to you.", sender_name="Kim Park",
                      received_at=timezone.now() - timedelta(days=1)).message.conversation
    in_thread(services.set_status, conversation=pending, status="pending")
    CannedResponse.objects.create(
        title="Thanks, we'll confirm", shortcut="thanks",
        body="Hi {{ customer.first_name }}, thanks for reaching out! I'll confirm the menu for "
             "{{ booking.guest_count }} guests today. — {{ agent.first_name }}")
    return first.message.conversation


def test_agent_replies_with_a_canned_response_adds_a_note_and_resolves(live, sign_in):
    make_user("alice", first_name="Alice")
    conversation = demo_inbox()
    alice = sign_in("alice")
    page = alice.page
    expect(page.get_by_role("heading", level=1)).to_have_text("Inbox (3 Open)")  # John (SMS + email), Maria, Sam
    expect(page.locator('.tab:has-text("Pending") .count')).to_have_text("1")
    expect(page.locator("#rows > li.row")).to_have_count(3)
    expect(page.locator(f"#conv-{conversation.pk}")).to_have_class(re.compile(r"\bunread\b"))
    expect(page.locator(f"#conv-{conversation.pk} .contact")).to_contain_text("john.doe@example.com")
    alice.wait_live()
    screenshot(page, "inbox.png")  # docs: tests/browser/test_admin_and_polish.py

    page.locator(f"#conv-{conversation.pk} .row-link").click()
    page.wait_for_url(f"**/inbox/{conversation.pk}/")
    profile = page.locator(".profile")
    expect(profile).to_contain_text("3 completed, 1 upcoming")  # previous bookings
    expect(profile).to_contain_text("Silver")
    expect(profile.locator("#profile-next-booking")).to_contain_text("Guests 14")
    expect(profile).to_contain_text("+14155550100")
    expect(page.locator("#thread-items > li.item")).to_have_count(2)  # the SMS and the email, in time order
    expect(page.locator("#thread-items > li.item").first).to_contain_text("Is the chef available")
    expect(page.locator("details.quoted")).to_have_count(1)
    assert alice.api(f"/api/v1/inbox/{conversation.pk}")["conversation"]["is_unread"] is False
    alice.wait_live()

    # Reply: "/thanks" is replaced by the canned response with its variables filled.
    text = page.get_by_label("Message to the customer")
    text.click()
    # Hold the canned-response answers until both keys are typed: "s" completes the
    # shortcut and the space asks for it again, so two answers arrive for one "/thanks".
    held = []
    page.route("**/api/v1/canned-responses/*/render*", lambda route: held.append(route))
    text.press_sequentially("/thanks ")
    for _ in range(100):
        if len(held) >= 2:
            break
        page.wait_for_timeout(20)
    assert len(held) == 2
    for route in held:
        route.continue_()
    page.unroute("**/api/v1/canned-responses/*/render*")
    expect(text).to_have_value("Hi John, thanks for reaching out! I'll confirm the menu for 14 guests today. — Alice")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#composer .notice")).to_have_text("Reply queued for sending.")
    expect(page.locator("#thread-items > li.item.outbound")).to_contain_text("thanks for reaching out")
    expect(page.locator("#thread-items > li.item.outbound .delivery")).to_have_text("Sent")
    thread = alice.api(f"/api/v1/inbox/{conversation.pk}")["thread"]
    outbound = [i["item"] for i in thread if i["kind"] == "message" and i["item"]["direction"] == "outbound"]
    # Exactly once: the space after "/thanks" asks for the same response again while the first is on its way.
    assert outbound and outbound[-1]["text"] == (
        "Hi John, thanks for reaching out! I'll confirm the menu for 14 guests today. — Alice")
    assert outbound[-1]["author"]["username"] == "alice"

    # A note, written in note mode.
    page.get_by_label("Internal note").check()
    page.get_by_label("Note (staff only)").fill("Allergic to shellfish: tell the chef.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#thread-items > li.item.note")).to_contain_text("Allergic to shellfish")
    thread = alice.api(f"/api/v1/inbox/{conversation.pk}")["thread"]
    assert [i["item"]["body"] for i in thread if i["kind"] == "note"] == ["Allergic to shellfish: tell the chef."]
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "thread.png")

    page.get_by_role("button", name="Resolve").click()
    # Resolved: on to the next conversation of the list, with the confirmation and its Undo.
    page.wait_for_url(re.compile(rf".*/inbox/(?!{conversation.pk}/)\d+/$"))
    expect(page.locator("#undo-bar")).to_contain_text("Resolved John Doe")
    assert alice.api(f"/api/v1/inbox/{conversation.pk}")["conversation"]["status"] == "resolved"
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Inbox (2 Open)")


def test_two_agents_see_new_messages_and_assignments_live(live, sign_in):
    make_user("alice", first_name="Alice")
    make_user("bob", first_name="Bob")
    receive("early@example.com", "First!", sender_name="Early Bird")
    alice, bob = sign_in("alice"), sign_in("bob")
    for person in (alice, bob):
        person.wait_live()
        expect(person.page.get_by_role("heading", level=1)).to_have_text("Inbox (1 Open)")

    new = receive("+1 415 555 0142", "Is Sunday still free for 20 people?", channel="sms", sender_name="Dana Cruz")
    row = f"#conv-{new.message.conversation_id}"
    for person in (alice, bob):
        expect(person.page.locator(row)).to_contain_text("Is Sunday still free", timeout=LIVE_WITHIN_MS)
        expect(person.page.locator(row)).to_contain_text("SMS")
        expect(person.page.get_by_role("heading", level=1)).to_have_text("Inbox (2 Open)", timeout=LIVE_WITHIN_MS)
    expect(bob.page.locator("#rows > li.row").first).to_have_id(f"conv-{new.message.conversation_id}")

    # Bob has the thread open; Alice takes the conversation from her list.
    bob.page.locator(f"{row} .row-link").click()
    bob.page.wait_for_url(f"**/inbox/{new.message.conversation_id}/")
    bob.wait_live()
    alice.page.locator(row).get_by_role("button", name=re.compile("Assign .* to me")).click()
    expect(alice.page.locator(f"{row} .assignee")).to_have_text("Alice")
    expect(bob.page.locator("#assignee-select option:checked")).to_have_text("Alice", timeout=LIVE_WITHIN_MS)

    # A new message for the open thread appears there at once.
    receive("+1 415 555 0142", "Also: one guest is vegan.", channel="sms")
    expect(bob.page.locator("#thread-items")).to_contain_text("one guest is vegan", timeout=LIVE_WITHIN_MS)


def test_a_missed_event_and_a_dropped_socket_are_caught_up(live, sign_in):
    """Events dropped before they reach the socket (as channels-redis does for a
    full queue) are noticed by the gap in the numbers and read from the API;
    events raised while the socket is down are read after the reconnect."""
    make_user("alice", first_name="Alice")
    state = {"drop_conversation": None, "dropped": 0, "routes": []}

    def route(ws):
        server = ws.connect_to_server()
        state["routes"].append(ws)

        def forward(message):
            event = json.loads(message)
            if event.get("conversation") is not None and event.get("conversation") == state["drop_conversation"]:
                state["dropped"] += 1
                return
            ws.send(message)

        server.on_message(forward)

    alice = sign_in("alice", before_login=lambda page: page.route_web_socket(re.compile(r".*/ws/inbox$"), route))
    page = alice.page
    alice.wait_live()

    # Playwright hands socket frames to the route only while the test waits
    # on the page, so the conversation id is known before its events pass by.
    lost = receive("lost@example.com", "This one never reached the socket", sender_name="Lost Event")
    state["drop_conversation"] = lost.message.conversation_id
    page.wait_for_timeout(500)
    assert state["dropped"] == 2  # conversation.created and message.created
    expect(page.locator(f"#conv-{lost.message.conversation_id}")).to_have_count(0)  # really missed
    after = receive("next@example.com", "The next one did", sender_name="Next Event")
    expect(page.locator(f"#conv-{after.message.conversation_id}")).to_be_visible(timeout=LIVE_WITHIN_MS)
    expect(page.locator(f"#conv-{lost.message.conversation_id}")).to_contain_text("never reached", timeout=LIVE_WITHIN_MS)
    state["drop_conversation"] = None

    # The socket goes down; a message arrives meanwhile; the page reconnects and catches up.
    state["routes"][-1].close(code=1012, reason="restart")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "down")
    during = receive("during@example.com", "Sent while the socket was down", sender_name="While Down")
    alice.wait_live()
    expect(page.locator(f"#conv-{during.message.conversation_id}")).to_contain_text("while the socket was down")
    expect(page.get_by_role("heading", level=1)).to_have_text("Inbox (3 Open)")


def test_customer_html_and_script_never_run(live, sign_in):
    make_user("alice", first_name="Alice")
    attack = receive(
        "mallory@example.com", "<script>window.__pwned = 'text'</script> hello <img src=x onerror=\"window.__pwned='img'\">",
        html="<p>Hi</p><img src=x onerror=\"window.__pwned='html-img'\"><script>window.__pwned='html-script'</script>"
             "<a href=\"javascript:window.__pwned='link'\">click</a>",
        subject="<script>window.__pwned='subject'</script>",
        sender_name="<img src=y onerror=\"window.__pwned='name'\">",
    )
    alice = sign_in("alice")
    page = alice.page
    row = page.locator(f"#conv-{attack.message.conversation_id}")
    expect(row).to_contain_text("<script>window.__pwned = 'text'</script>")  # shown as text
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None
    row.locator(".row-link").click()
    expect(page.locator("#thread-items")).to_contain_text("Hi")
    page.locator("#thread-items a", has_text="click").click(modifiers=[])
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#thread-items script").count() == 0
    assert page.locator("#thread-items [onerror]").count() == 0


def test_remote_images_load_only_through_our_origin_after_show_images(live, sign_in):
    """A tracking pixel in customer email: opening the thread asks nothing of its
    host; "Show images" loads it through our own image proxy, never directly."""
    from urllib.parse import urlsplit

    make_user("alice", first_name="Alice")
    message = receive("pix@example.com", "Menu attached",
                      html='<p>Menu attached <img src="https://tracker.example/p.gif" alt="pixel" width="10"></p>').message
    alice = sign_in("alice")
    page = alice.page
    asked = []
    alice.context.on("request", lambda request: asked.append(request.url))
    alice.context.route(re.compile(r"^https?://tracker\.example/"), lambda route: route.abort())
    page.goto(f"/inbox/{message.conversation_id}/")
    expect(page.locator("#thread-items")).to_contain_text("Menu attached")
    alice.wait_live()
    page.wait_for_timeout(300)
    assert [u for u in asked if urlsplit(u).hostname == "tracker.example"] == []
    button = page.get_by_role("button", name="Show images")
    with page.expect_request(lambda request: "/inbox/image?" in request.url) as proxied:
        button.click()
    assert proxied.value.url.startswith(f"{live.url}/inbox/image?url=https%3A%2F%2Ftracker.example%2Fp.gif&sig=")
    expect(button).to_have_count(0)
    page.wait_for_timeout(300)
    assert [u for u in asked if urlsplit(u).hostname == "tracker.example"] == []


def test_bad_input_gets_a_clear_message_and_keeps_the_text(live, sign_in):
    make_user("alice", first_name="Alice")
    conversation = receive("jo@example.com", "Hello", sender_name="Jo Bloggs").message.conversation
    alice = sign_in("alice",
                    # No live updates: this page goes stale on purpose.
                    before_login=lambda page: page.route_web_socket(re.compile(r".*/ws/inbox$"), lambda ws: ws.close()))
    page = alice.page
    page.goto(f"/inbox/{conversation.pk}/")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#composer-error")).to_have_text("A reply cannot be empty.")

    long_text = "x" * 70_000
    page.get_by_label("Message to the customer").fill(long_text)
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#composer-error")).to_contain_text("the limit is 65,536")
    assert page.get_by_label("Message to the customer").input_value() == long_text

    # Someone else closes the conversation; this page still offers "Resolve".
    in_thread(services.set_status, conversation=conversation, status="closed")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#header-error")).to_contain_text("A closed conversation cannot be set to resolved")
    page.get_by_label("Message to the customer").fill("Are you still there?")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#composer-error")).to_contain_text("closed")
    expect(page.get_by_label("Message to the customer")).to_have_value("Are you still there?")


def test_keyboard_only_and_phone_width(live, sign_in):
    make_user("alice", first_name="Alice")
    for n in range(3):
        receive(f"k{n}@example.com", f"message number {n}", sender_name=f"Key Person{n}",
                received_at=timezone.now() - timedelta(minutes=n))
    alice = sign_in("alice", viewport={"width": 390, "height": 844})
    page = alice.page
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.locator("body").press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(page.locator("#rows > li.row.selected")).to_contain_text("message number 0")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/inbox/\d+/$"))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.keyboard.press("r")
    expect(page.get_by_label("Message to the customer")).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    expect(page.get_by_label("Note (staff only)")).to_be_focused()
    page.keyboard.press("Escape")
    first = int(re.search(r"/inbox/(\d+)/$", page.url).group(1))
    page.keyboard.press("e")
    page.wait_for_url(re.compile(rf".*/inbox/(?!{first}/)\d+/$"))  # the next conversation of the list
    expect(page.locator("#undo-bar")).to_be_visible()
    assert alice.api(f"/api/v1/inbox/{first}")["conversation"]["status"] == "resolved"
    page.keyboard.press("/")
    expect(page.locator("#q")).to_be_focused()


def test_manager_reaches_the_admin_and_an_agent_does_not(live, sign_in):
    make_user("morgan", role="Manager", first_name="Morgan")
    make_user("alice", first_name="Alice", is_staff=True)  # even with is_staff, an agent is kept out
    morgan = sign_in("morgan")
    morgan.page.get_by_role("link", name="Admin").click()
    expect(morgan.page.get_by_role("heading", name="Site administration")).to_be_visible()
    alice = sign_in("alice")
    expect(alice.page.get_by_role("link", name="Admin")).to_have_count(0)
    alice.page.goto("/admin/")
    expect(alice.page).to_have_url(re.compile(r"/admin/login/"))
    expect(alice.page.get_by_role("heading", name="Site administration")).to_have_count(0)
    assert Conversation.objects.count() == 0


def test_a_page_whose_session_logged_out_stops_its_socket_and_says_so(live, sign_in):
    make_user("alice", first_name="Alice")
    alice = sign_in("alice")
    alice.wait_live()
    other_tab = alice.context.new_page()
    other_tab.goto("/")
    other_tab.get_by_role("button", name="Log out").click()
    other_tab.wait_for_url(re.compile(r"/login/"))
    status = alice.page.locator("#live-status")
    expect(status).to_have_attribute("data-state", "ended")
    expect(status).to_have_text(re.compile("Signed out"))
    alice.page.wait_for_timeout(1500)  # longer than the first reconnect delay: it must not try
    expect(status).to_have_attribute("data-state", "ended")


def test_the_history_opens_in_the_thread_header(live, sign_in):
    alice_user = make_user("alice", first_name="Alice")
    conversation = receive("pat@example.com", "Is Saturday free?").message.conversation
    in_thread(services.assign, conversation=conversation, assignee=alice_user, by=alice_user)
    in_thread(services.set_status, conversation=conversation, status="pending", by=alice_user)
    alice = sign_in("alice")
    page = alice.page
    page.goto(f"/inbox/{conversation.pk}/")
    history = page.locator("#conv-history")
    expect(history.locator("li")).to_have_count(0)  # nothing loaded until it is opened
    history.locator("summary").click()
    expect(history.locator("li")).to_have_count(2)
    expect(history.locator("li").first).to_contain_text("Alice set it to Pending")
    expect(history.locator("li").nth(1)).to_contain_text("Alice assigned it to Alice")
