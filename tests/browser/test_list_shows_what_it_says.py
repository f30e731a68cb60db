"""Issue 13, "the list shows what it says", in headless Chromium against the live server:
channels on rows, counts that follow filters and search, search hits, tags, toasts, @mentions."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from inbox import services
from tests.factories import make_customer, make_user

from .conftest import in_thread, screenshot
from .test_staff_screens import receive

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]


def mixed_inbox():
    """John: email then SMS (one conversation); Maria: email; Sam: a call, resolved."""
    make_customer("john.doe@example.com", first_name="John", last_name="Doe", phone="+1 415 555 0100")
    receive("john.doe@example.com", "Party for 12 in Sacramento?", received_at=timezone.now() - timedelta(hours=2))
    john = receive("+1 415 555 0100", "Sent you an email about the party", channel="sms").message.conversation
    maria = receive("maria@example.com", "Do you travel to San Jose?", sender_name="Maria Lopez",
                    received_at=timezone.now() - timedelta(minutes=40)).message.conversation
    sam = receive("+1 650 555 0199", "Missed call, 0:42", channel="call", sender_name="Sam Lee",
                  received_at=timezone.now() - timedelta(hours=1)).message.conversation
    in_thread(services.set_status, conversation=sam, status="resolved")
    return john, maria, sam


def test_the_channel_filter_shows_only_rows_that_visibly_carry_the_channel(live, sign_in):
    make_user("alice", first_name="Alice")
    john, maria, sam = mixed_inbox()
    page = sign_in("alice").page
    expect(page.locator("#inbox-heading")).to_have_text("Inbox (2 Open)")
    page.get_by_label("Channel").select_option("email")
    expect(page.locator("#inbox-heading")).to_have_text("Inbox (2 Open)")
    expect(page.locator("#filter-summary")).to_contain_text("On Email")
    rows = page.locator("#rows > li.row")
    expect(rows).to_have_count(2)
    for i in range(rows.count()):  # what is filtered is what is seen
        expect(rows.nth(i).locator(".channels .channel-email")).to_be_visible()
    expect(page.locator(f"#conv-{john.pk} .channels .channel-sms")).to_be_visible()  # and its other channel
    page.get_by_label("Channel").select_option("sms")
    expect(rows).to_have_count(1)
    expect(page.locator("#inbox-heading")).to_have_text("Inbox (1 Open)")
    expect(page.locator('.tab:has-text("Resolved") .count')).to_have_text("0")
    page.get_by_label("Channel").select_option("call")
    expect(page.locator("#rows-empty")).to_be_visible()
    expect(page.locator('.tab:has-text("Resolved") .count')).to_have_text("1")
    expect(page.locator("#clear-filters")).to_be_visible()
    page.locator("#clear-filters").click()
    expect(rows).to_have_count(2)
    expect(page.get_by_label("Channel")).to_have_value("")
    expect(page).to_have_title(re.compile(r"^Inbox \(2 Open\)"))


def test_search_covers_every_status_and_shows_why_each_row_matched(live, sign_in):
    make_user("alice", first_name="Alice")
    alex = make_user("akim", first_name="Alex", last_name="Kim")
    john, maria, sam = mixed_inbox()
    in_thread(services.add_note, conversation=maria, author=alex,
              body="Maria asked about a <b>gluten</b>-free menu")
    page = sign_in("alice").page
    page.get_by_label("Search").fill("missed")
    expect(page.locator("#rows > li.row")).to_have_count(1)
    expect(page.locator(f"#conv-{sam.pk}")).to_be_visible()  # resolved, found from the Open tab
    expect(page.locator('.tab:has-text("Resolved") .count')).to_have_text("1")
    expect(page.locator('.tab:has-text("Open") .count')).to_have_text("0")
    expect(page.locator(f"#conv-{sam.pk} .preview mark")).to_have_text("Missed")
    page.locator('.tab:has-text("Open")').click()
    expect(page.locator("#rows-empty")).to_be_visible()
    page.locator("#search-all").click()
    expect(page.locator(f"#conv-{sam.pk}")).to_be_visible()
    page.get_by_label("Search").fill("gluten")
    hit = page.locator(f"#conv-{maria.pk} .preview")
    expect(hit).to_contain_text("Note:")
    expect(hit.locator("mark")).to_have_text("gluten")
    expect(hit).to_contain_text("<b>")  # a colleague's markup stays text
    expect(page.locator(f"#conv-{maria.pk} .preview b")).to_have_count(0)
    screenshot(page, "inbox-search.png", docs=True)


def test_tags_added_in_the_thread_show_live_on_another_agents_list(live, sign_in):
    make_user("alice", first_name="Alice")
    make_user("bob", first_name="Bob")
    john, maria, sam = mixed_inbox()
    alice, bob = sign_in("alice"), sign_in("bob")
    bob.wait_live()
    alice.page.goto(f"/inbox/{john.pk}/")
    alice.page.get_by_label("Add a tag").fill("VIP")
    alice.page.get_by_role("button", name="Add tag").click()
    expect(alice.page.locator('#conv-tags .tag[data-tag="vip"]')).to_be_visible()
    expect(bob.page.locator(f"#conv-{john.pk} .badges .tag")).to_have_text("vip")  # live, no reload
    bob.page.reload()  # the tag filter lists the tags that existed when the page was drawn
    bob.wait_live()
    bob.page.get_by_label("Tag").select_option("vip")
    expect(bob.page.locator("#rows > li.row")).to_have_count(1)
    expect(bob.page.locator("#filter-summary")).to_contain_text("Tagged vip")
    refreshed = alice.page.evaluate("window.inboxLive.refreshes")
    alice.page.get_by_role("button", name="Remove tag vip").click()
    expect(alice.page.locator('#conv-tags .tag[data-tag="vip"]')).to_have_count(0)
    expect(bob.page.locator(f"#conv-{john.pk}")).to_have_count(0)  # no longer tagged: it leaves the list
    alice.page.locator("#conv-history summary").click()
    # The removal's own live event redraws the header: History stays open, read again.
    alice.page.wait_for_function(f"() => window.inboxLive.refreshes > {refreshed}")  # a function: the CSP forbids eval
    expect(alice.page.locator("#conv-history")).to_have_attribute("open", "")
    expect(alice.page.locator("#conv-history")).to_contain_text("Alice removed the tag vip")


def test_toasts_name_the_person_link_to_the_conversation_and_are_never_replayed(live, sign_in):
    alice_user = make_user("alice", first_name="Alice")
    alex_user = make_user("akim", first_name="Alex", last_name="Kim")
    john, maria, sam = mixed_inbox()
    alice, alex = sign_in("alice"), sign_in("akim")
    alice.wait_live()
    alex.wait_live()
    # Alice assigns herself: no toast for her own action.
    alice.page.get_by_role("button", name="Assign Maria Lopez to me").click()
    expect(alice.page.locator(f"#conv-{maria.pk} .assignee")).to_have_text("Alice")
    # Alex assigns John to Alice: she is told, by name, with a link.
    alex.page.goto(f"/inbox/{john.pk}/")
    alex.page.get_by_label("Assignee").select_option(str(alice_user.pk))
    toast = alice.page.locator("#toasts .toast")
    expect(toast).to_have_count(1)
    expect(toast).to_contain_text(f"Alex Kim assigned conversation #{john.pk} to you.")
    expect(toast.get_by_role("link")).to_have_attribute("href", f"/inbox/{john.pk}/")
    covered = alice.page.evaluate("""() => {
        const t = document.querySelector("#toasts .toast").getBoundingClientRect();
        return [...document.querySelectorAll("#rows .actions .btn, #rows .actions button")].filter(b => {
            const r = b.getBoundingClientRect();
            return r.width && !(t.right <= r.left || r.right <= t.left || t.bottom <= r.top || r.bottom <= t.top);
        }).map(b => b.textContent);
    }""")
    assert covered == [], f"the toast covers {covered}"
    expect(alex.page.locator("#toasts .toast")).to_have_count(0)  # Alex did it: nothing for him
    in_thread(services.add_note, conversation=john, author=alex_user, body="@alice can you call John?")
    mention = alice.page.locator("#toasts .toast", has_text="mentioned you")
    expect(mention).to_contain_text("Alex Kim mentioned you in a note on John Doe.")
    expect(mention.get_by_role("link")).to_have_attribute("href", re.compile(rf"^/inbox/{john.pk}/#n-\d+$"))
    # A reload reads the recent events again (catch-up): the toast is not shown twice.
    alice.page.reload()
    alice.wait_live()
    alice.page.wait_for_function("() => window.inboxLive.catchUps >= 1")
    alice.page.wait_for_timeout(500)
    expect(alice.page.locator("#toasts .toast")).to_have_count(0)


def test_at_in_a_note_suggests_staff_flags_unknown_names_and_highlights_mentions(live, sign_in):
    make_user("alice", first_name="Alice")
    make_user("akim", first_name="Alex", last_name="Kim")
    john, maria, sam = mixed_inbox()
    alice = sign_in("alice")
    page = alice.page
    page.goto(f"/inbox/{maria.pk}/")
    page.get_by_label("Internal note").check()
    box = page.locator("#reply-text")
    box.click()
    box.press_sequentially("Please call her @al")
    options = page.locator("#mention-suggestions [role=option]")
    expect(options.first).to_be_visible()
    expect(page.locator("#mention-suggestions")).to_contain_text("Alex Kim")
    page.locator("#mention-suggestions li", has_text="Alex Kim").click()
    expect(box).to_have_value("Please call her @akim ")
    box.press_sequentially("and @bob")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#composer-error")).to_contain_text("No staff member is called @bob")
    expect(page.locator("#thread-items .item.note")).to_have_count(0)  # flagged before saving
    expect(box).to_have_value("Please call her @akim and @bob")
    page.get_by_role("button", name="Add note").click()  # as it is, on purpose
    note = page.locator("#thread-items .item.note")
    expect(note).to_have_count(1)
    expect(note.locator(".mention")).to_have_text(["@akim", "@bob"])
