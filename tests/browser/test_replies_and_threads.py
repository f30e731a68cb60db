"""Issue 13 in the browser: replies that can be trusted, one customer in one place."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from inbox import services
from inbox.models import Conversation, Message
from tests.factories import make_customer, make_user

from .conftest import in_thread

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]


def receive(sender, text, channel="email", **extra):
    extra.setdefault("external_id", f"{channel}-{sender}-{text[:20]}")
    return in_thread(services.receive_message, channel=channel, sender=sender, text=text, **extra)


def failed_reply(conversation, author, text, channel="sms", reason="Carrier refused: unreachable number"):
    """A reply its provider refused (the live server's stand-in sender never fails)."""
    now = timezone.now()
    message = Message.objects.create(conversation=conversation, customer=conversation.customer, channel=channel,
                                     direction="outbound", text=text, author=author, delivery_status="failed",
                                     status_reason=reason, created_at=now,
                                     metadata={"to": "+14155550100"} if channel == "sms" else {})
    Conversation.objects.filter(pk=conversation.pk).update(last_message=message, last_activity_at=now)
    return message


def test_the_composer_offers_what_can_send_and_a_failed_reply_is_retried_or_emailed_once(live, sign_in):
    alice_user = make_user("alice", first_name="Alice")
    make_customer("john.doe@example.com", first_name="John", last_name="Doe", phone="+1 415 555 0100")
    receive("john.doe@example.com", "Can you send the invoice again?", received_at=timezone.now() - timedelta(hours=2))
    conversation = receive("+1 415 555 0100", "Also: is 6 pm fine?", channel="sms").message.conversation
    only_email = receive("maria@example.com", "Do you travel to San Jose?", sender_name="Maria Lopez",
                         received_at=timezone.now() - timedelta(hours=3)).message.conversation
    sms = failed_reply(conversation, alice_user, "Yes, 6 pm works")
    alice = sign_in("alice")
    page = alice.page

    row = page.locator(f"#conv-{conversation.pk} .preview")
    expect(row).to_contain_text("Failed: Carrier refused: unreachable number")
    expect(row).not_to_contain_text("Sent:")

    # Maria has an email address only: SMS and Chat are not offered, and the box says why.
    page.goto(f"/inbox/{only_email.pk}/")
    expect(page.locator("#reply-channel option")).to_have_count(1)
    expect(page.locator("#reply-channel")).to_have_value("email")
    expect(page.locator("#channels-missing")).to_contain_text("SMS: Maria Lopez has no phone number on file.")
    expect(page.locator("#channels-missing")).to_contain_text("Chat: Maria Lopez has not started a chat")

    # John last wrote by SMS: the box starts there; the failed SMS shows its reason and the two ways on.
    page.goto(f"/inbox/{conversation.pk}/")
    expect(page.locator("#reply-channel")).to_have_value("sms")
    item = page.locator(f"#m-{sms.pk}")
    expect(item.locator(".failed-reply")).to_contain_text("Failed: Carrier refused: unreachable number")
    alice.wait_live()
    item.get_by_role("button", name="Retry").dblclick()  # a double click sends once
    expect(page.locator(f"#m-{sms.pk} .delivery")).to_have_text("Sent")
    sms.refresh_from_db()
    assert sms.delivery_status == "sent" and sms.metadata["retries"] == 1

    second = failed_reply(conversation, alice_user, "The invoice is attached to my email")
    page.reload()
    page.locator(f"#m-{second.pk}").get_by_role("button", name="Send by email instead").dblclick()
    expect(page.locator(f"#m-{second.pk}")).to_contain_text("sent again by email")
    emails = Message.objects.filter(direction="outbound", channel="email", text=second.text)
    assert emails.count() == 1
    expect(page.locator(f"#m-{emails.get().pk}")).to_contain_text("The invoice is attached")


def test_the_thread_opens_at_the_newest_item_with_older_conversations_in_marked_sections(live, sign_in):
    make_user("alice", first_name="Alice")
    start = timezone.now() - timedelta(days=20)
    old = receive("luis@example.com", "Our first party, in May", sender_name="Luis Nguyen",
                  received_at=start).message.conversation
    in_thread(services.set_status, conversation=old, status="closed")
    for n in range(40):
        current = receive("luis@example.com", f"Question number {n} about the menu and the chef",
                          received_at=start + timedelta(days=10, minutes=n)).message.conversation
    alice = sign_in("alice")
    page = alice.page
    expect(page.locator("#rows > li.row")).to_have_count(1)  # one customer, one row
    page.goto(f"/inbox/{current.pk}/")
    newest = page.locator("#thread-items > li.item").last
    expect(newest).to_contain_text("Question number 39")
    expect(newest).to_be_in_viewport()
    expect(page.locator("#composer")).to_be_in_viewport()
    assert page.evaluate("window.scrollY") > 0

    # The earlier conversation: a closed section, collapsed, with its own status and history.
    section = page.locator(f'.conv-section[data-conversation="{old.pk}"]')
    expect(section).to_have_count(1)
    expect(section.locator("summary")).to_contain_text(f"Earlier conversation #{old.pk}")
    expect(section.locator("summary .status")).to_have_text("Closed")
    expect(section.get_by_text("Our first party, in May")).to_be_hidden()
    section.locator("summary").click()
    expect(section.get_by_text("Our first party, in May")).to_be_visible()
    expect(section).to_contain_text("set it to Closed")


def test_resolve_confirms_with_undo_and_moves_to_the_next_conversation(live, sign_in):
    make_user("alice", first_name="Alice")
    first = receive("ann@example.com", "First in the list", sender_name="Ann Lee").message.conversation
    second = receive("ben@example.com", "Second in the list", sender_name="Ben Ross",
                     received_at=timezone.now() - timedelta(minutes=5)).message.conversation
    alice = sign_in("alice")
    page = alice.page
    expect(page.locator("#rows > li.row")).to_have_count(2)
    page.locator(f"#conv-{first.pk} .row-link").click()
    page.wait_for_url(f"**/inbox/{first.pk}/")
    alice.wait_live()
    page.locator("body").press("e")
    page.wait_for_url(f"**/inbox/{second.pk}/")
    bar = page.locator("#undo-bar")
    expect(bar).to_contain_text("Resolved Ann Lee")
    assert alice.api(f"/api/v1/inbox/{first.pk}")["conversation"]["status"] == "resolved"
    bar.get_by_role("button", name="Undo").click()
    expect(bar).to_contain_text("is open again")
    assert alice.api(f"/api/v1/inbox/{first.pk}")["conversation"]["status"] == "open"

    # The timeline of the first conversation shows both changes, who made them and in order.
    page.goto(f"/inbox/{first.pk}/")
    activity = page.locator("#thread-items > li.item.activity")
    expect(activity).to_have_count(2)
    expect(activity.nth(0)).to_contain_text("Alice set it to Resolved")
    expect(activity.nth(1)).to_contain_text("Alice set it to Open")
    expect(bar).to_have_count(0)  # the confirmation is not replayed on the next page load
