"""The thread's profile panel answers what a customer asks about: bookings,
the next one in full, other conversations, and what staff know about them."""
import html
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from crm import services as crm_services
from crm.models import Booking, CustomerNote
from inbox import services
from inbox.models import Conversation


def book(customer, *, days, status, total="0", deposit="0", address="", guests=10):
    return Booking.objects.create(customer=customer, event_at=timezone.now() + timedelta(days=days),
                                  guest_count=guests, status=status, total=Decimal(total), deposit=Decimal(deposit),
                                  address=address)


def panel(response):
    page = response.content.decode()
    return html.unescape(re.search(r'<aside class="profile card".*?</aside>', page, re.S).group(0))


def plain(fragment):
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())


@pytest.fixture
def thread(receive):
    return receive("luis@example.com", text="Is my party still on?", subject="Saturday party").message.conversation


def test_bookings_are_stated_plainly_and_the_next_one_in_full(agent_client, thread):
    customer = thread.customer
    for days in (-300, -200, -100):
        book(customer, days=days, status=Booking.Status.COMPLETED)
    book(customer, days=-50, status=Booking.Status.CANCELLED)
    book(customer, days=40, status=Booking.Status.INQUIRY)
    book(customer, days=12, status=Booking.Status.CONFIRMED, total="1240.00", deposit="300.00",
         address="18 Ocean Ave, Santa Monica", guests=14)
    text = plain(panel(agent_client.get(f"/inbox/{thread.pk}/")))
    assert "Previous bookings 3 completed, 2 upcoming, 1 cancelled" in text
    assert "Loyalty tier Silver" in text
    assert "Address 18 Ocean Ave, Santa Monica" in text and "Guests 14" in text
    assert "Total $1,240.00" in text and "Deposit paid $300.00" in text and "Balance due $940.00" in text
    assert " at " in text.split("Next booking", 1)[1][:40]  # date and time


def test_a_customer_without_bookings_reads_none(agent_client, thread):
    text = plain(panel(agent_client.get(f"/inbox/{thread.pk}/")))
    assert "Previous bookings None yet" in text and "Next booking None booked" in text


def test_other_conversations_are_listed_with_their_status_and_link(agent_client, thread, agent):
    services.set_status(conversation=thread, status="resolved", by=agent)
    Conversation.objects.filter(pk=thread.pk).update(resolved_at=timezone.now() - timedelta(days=30))
    # Past the reopen window: a new conversation.
    newer = services.receive_message(channel="email", sender="luis@example.com", text="New party please",
                                     subject="New party", external_id="ext-newer").message.conversation
    assert newer.pk != thread.pk
    aside = panel(agent_client.get(f"/inbox/{newer.pk}/"))
    assert f'href="/inbox/{thread.pk}/"' in aside and "Saturday party" in aside and "Resolved" in aside
    assert f'href="/inbox/{newer.pk}/"' not in aside  # not the one on screen


def test_admin_links_only_for_those_who_may_open_the_admin(agent_client, manager, thread, client):
    aside = panel(agent_client.get(f"/inbox/{thread.pk}/"))
    assert "/admin/" not in aside
    client.force_login(manager)
    aside = panel(client.get(f"/inbox/{thread.pk}/"))
    customer = thread.customer
    assert f'href="/admin/crm/customer/{customer.pk}/change/"' in aside
    bookings = f"/admin/crm/booking/?customer__id__exact={customer.pk}"
    assert f'href="{bookings}"' in aside
    book(customer, days=5, status=Booking.Status.CONFIRMED, address="Here")
    other = crm_services.customer_for_identity(kind="email", value="else@example.com")[0]
    book(other, days=6, status=Booking.Status.CONFIRMED, address="Elsewhere")
    page = client.get(bookings).content.decode()
    assert "1 booking" in page or "1 result" in page


def test_staff_note_about_the_customer_is_saved_and_shown_in_every_conversation(agent_client, thread, agent):
    response = agent_client.post(f"/inbox/{thread.pk}/customer-note", {"body": "Allergic to shellfish. Gate code 4411."},
                                 HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Allergic to shellfish. Gate code 4411." in response.content.decode()
    note = CustomerNote.objects.get()
    assert note.customer_id == thread.customer_id and note.author == agent
    text = plain(panel(agent_client.get(f"/inbox/{thread.pk}/")))
    assert "Allergic to shellfish. Gate code 4411." in text and "Alice" in text
    # Without JavaScript: a plain post, then the thread again.
    response = agent_client.post(f"/inbox/{thread.pk}/customer-note", {"body": "Prefers texts"})
    assert response.status_code == 302 and response["Location"].endswith("#customer-notes")


@pytest.mark.parametrize("body, status, message", [
    ("   ", 422, "Write the note before saving it."),
    ("x" * 5001, 422, "at most 5,000 characters"),
])
def test_bad_customer_notes_are_refused_next_to_the_box_and_keep_the_text(agent_client, thread, body, status, message):
    for headers in ({"HTTP_HX_REQUEST": "true"}, {}):
        response = agent_client.post(f"/inbox/{thread.pk}/customer-note", {"body": body}, **headers)
        assert response.status_code == status
        page = response.content.decode()
        assert message in page and 'aria-invalid="true"' in page
    assert not CustomerNote.objects.exists()


def test_customer_notes_need_staff_and_a_post(client, agent_client, thread, db):
    assert agent_client.get(f"/inbox/{thread.pk}/customer-note").status_code == 405
    assert agent_client.post("/inbox/999999/customer-note", {"body": "x"}).status_code == 404
    client.logout()
    response = client.post(f"/inbox/{thread.pk}/customer-note", {"body": "x"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not CustomerNote.objects.exists()


def test_customer_note_service_refuses_empty_and_long_notes(thread, agent):
    from django.core.exceptions import ValidationError

    for body in ("", "\n  \t", "y" * 5001):
        with pytest.raises(ValidationError):
            crm_services.add_customer_note(customer=thread.customer, author=agent, body=body)
    note = crm_services.add_customer_note(customer=thread.customer, author=agent, body="  VIP  ")
    assert note.body == "VIP"


def test_profile_panel_queries_do_not_grow_with_the_customer(agent_client, thread, agent,
                                                           django_assert_num_queries):
    """Pinned: bookings, conversations and notes each cost one query, however many there are."""
    agent_client.get(f"/inbox/{thread.pk}/")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as first:
        agent_client.get(f"/inbox/{thread.pk}/")
    customer = thread.customer
    for n in range(12):
        book(customer, days=n - 6 if n != 6 else 1, status=Booking.Status.CONFIRMED if n >= 6 else Booking.Status.COMPLETED)
        crm_services.add_customer_note(customer=customer, author=agent, body=f"note {n}")
    with django_assert_num_queries(len(first.captured_queries)):
        text = plain(panel(agent_client.get(f"/inbox/{thread.pk}/")))
    assert "6 completed, 6 upcoming" in text
    assert len(re.findall(r"note \d+", text)) == 10  # the newest ten
    from inbox.selectors import customer_profile

    with django_assert_num_queries(4):
        customer_profile(customer, conversation_id=thread.pk)
