"""Merging customers (crm/merge.py with the inbox's part, inbox/merging.py), as a service and over the API."""
from datetime import timedelta

import pytest
from django.utils import timezone

from crm.merge import MergeRefused, merge_customers
from crm.models import Booking, Customer, CustomerIdentity, Lead
from inbox import services
from inbox.models import Conversation, ConversationActivity, Message, Note
from tests.factories import make_customer

VISITOR = "v" * 30


def chat(text, token=VISITOR, **extra):
    extra.setdefault("external_id", f"chat-{token[:6]}-{text[:12]}")
    return services.receive_message(channel="chat", sender=token, text=text, **extra)


def test_merge_moves_everything_and_deletes_the_source(db, agent):
    known = make_customer("john@example.com", phone="+1 415 555 0100")
    email = services.receive_message(channel="email", sender="john@example.com", text="Booking?", external_id="e1")
    booking = Booking.objects.create(customer=known, event_at=timezone.now() + timedelta(days=3), guest_count=8)
    visitor_msg = chat("Hi from the website")
    visitor = visitor_msg.message.customer
    services.add_note(conversation=visitor_msg.message.conversation, author=agent, body="website visitor")
    lead = Lead.objects.create(source="website", customer=visitor)

    merged = merge_customers(source=visitor, into=known, by=agent)

    assert merged.pk == known.pk
    assert not Customer.objects.filter(pk=visitor.pk).exists()
    assert set(CustomerIdentity.objects.filter(customer=known).values_list("kind", flat=True)) == \
        {"email", "phone", "visitor"}
    assert Message.objects.filter(customer=known).count() == 2
    assert Conversation.objects.filter(customer=known).count() == 2
    assert Note.objects.get().customer_id == known.pk
    assert Lead.objects.get(pk=lead.pk).customer_id == known.pk
    assert Booking.objects.get(pk=booking.pk).customer_id == known.pk
    # The visitor's chat identity now finds the known customer.
    again = chat("Still there?")
    assert again.message.customer_id == known.pk
    assert email.message.conversation.pk in Conversation.objects.filter(customer=known).values_list("pk", flat=True)


def test_two_active_conversations_keep_the_newest_active_and_resolve_the_other(db, agent):
    known = make_customer("john@example.com")
    old = services.receive_message(channel="email", sender="john@example.com", text="old", external_id="e1",
                                   received_at=timezone.now() - timedelta(hours=2)).message.conversation
    services.mark_read(conversation=old, by=agent)
    new = chat("newer, unanswered").message.conversation
    visitor = new.customer

    merge_customers(source=visitor, into=known, by=agent)

    old.refresh_from_db()
    new.refresh_from_db()
    assert new.status == "open" and new.is_unread
    assert old.status == "resolved" and old.resolved_at is not None
    assert Conversation.objects.filter(customer=known, status__in=["open", "pending"]).count() == 1
    # History in both threads: a merge row on each, the status change on the resolved one.
    for conversation in (old, new):
        row = ConversationActivity.objects.get(conversation=conversation, kind="merged")
        assert (row.from_value, row.to_value, row.actor_id) == (str(visitor.pk), str(known.pk), agent.pk)
    change = ConversationActivity.objects.get(conversation=old, kind="status_changed")
    assert (change.from_value, change.to_value) == ("open", "resolved")
    # The customer writing again joins the one that stayed active.
    assert services.receive_message(channel="email", sender="john@example.com", text="again",
                                    external_id="e2").message.conversation_id == new.pk


def test_unread_mark_moves_to_the_conversation_that_stays(db, agent):
    known = make_customer("john@example.com")
    unread_old = services.receive_message(channel="email", sender="john@example.com", text="unanswered",
                                          external_id="e1", received_at=timezone.now() - timedelta(hours=2))
    read_new = chat("read one").message.conversation
    services.mark_read(conversation=read_new, by=agent)
    merge_customers(source=read_new.customer, into=known)
    read_new.refresh_from_db()
    assert read_new.is_unread and read_new.status == "open"
    assert Conversation.objects.get(pk=unread_old.message.conversation_id).status == "resolved"


def test_merging_into_itself_is_refused_and_changes_nothing(db):
    customer = make_customer()
    with pytest.raises(MergeRefused):
        merge_customers(source=customer, into=customer)
    assert Customer.objects.filter(pk=customer.pk).exists()


def test_primary_identities_of_the_target_stay_primary(db):
    known = make_customer("john@example.com")
    other = make_customer("johnny@example.com")
    merge_customers(source=other, into=known)
    primaries = CustomerIdentity.objects.filter(customer=known, is_primary=True)
    assert list(primaries.values_list("value", flat=True)) == ["john@example.com"]


def test_a_name_is_kept_from_the_source_only_where_the_target_has_none(db):
    nameless, _ = Customer.objects.get_or_create(first_name="", last_name="")
    named = make_customer("maria@example.com", first_name="Maria", last_name="Lopez")
    merge_customers(source=named, into=nameless)
    nameless.refresh_from_db()
    assert nameless.name == "Maria Lopez"


# --- the API ------------------------------------------------------------------------

def test_api_merges_and_answers_with_the_target(agent_client, agent):
    known = make_customer("john@example.com")
    visitor = chat("hello").message.customer
    response = agent_client.post(f"/api/v1/customers/{visitor.pk}/merge", {"into": known.pk},
                                 content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == known.pk
    assert {i["kind"] for i in body["identities"]} == {"email", "visitor"}
    assert not Customer.objects.filter(pk=visitor.pk).exists()
    assert ConversationActivity.objects.filter(kind="merged", actor=agent).count() == 1


def test_api_refuses_a_merge_into_itself(agent_client):
    customer = make_customer()
    response = agent_client.post(f"/api/v1/customers/{customer.pk}/merge", {"into": customer.pk},
                                 content_type="application/json")
    assert response.status_code == 400
    assert "itself" in response.json()["message"]


@pytest.mark.parametrize("which", ["source", "into"])
def test_api_unknown_customers_are_404(agent_client, which):
    customer = make_customer()
    source, into = (999999, customer.pk) if which == "source" else (customer.pk, 999999)
    response = agent_client.post(f"/api/v1/customers/{source}/merge", {"into": into}, content_type="application/json")
    assert response.status_code == 404
    assert Customer.objects.filter(pk=customer.pk).exists()


@pytest.mark.parametrize("body", [{}, {"into": "abc"}, {"into": True}, {"into": -1}, ["x"]])
def test_api_bad_bodies_are_400(agent_client, body):
    customer = make_customer()
    response = agent_client.post(f"/api/v1/customers/{customer.pk}/merge", body, content_type="application/json")
    assert response.status_code == 400, response.content


def test_api_merge_needs_staff(client, db):
    customer = make_customer()
    other = make_customer("x@example.com")
    response = client.post(f"/api/v1/customers/{customer.pk}/merge", {"into": other.pk},
                           content_type="application/json")
    assert response.status_code in (401, 403)
    assert Customer.objects.count() == 2


def test_admin_action_merges_into_the_oldest(manager_client):
    oldest = make_customer("first@example.com")
    later = make_customer("second@example.com")
    response = manager_client.post("/admin/crm/customer/", {"action": "merge_into_oldest",
                                                            "_selected_action": [oldest.pk, later.pk]})
    assert response.status_code == 302
    assert list(Customer.objects.values_list("pk", flat=True)) == [oldest.pk]
    assert CustomerIdentity.objects.filter(customer=oldest).count() == 2


def _customer_with_threads(email, n):
    for k in range(n):
        received = services.receive_message(channel="email", sender=email, text=f"t{k}", external_id=f"{email}-{k}")
        services.set_status(conversation=received.message.conversation, status="closed")  # the next one starts anew
    return Customer.objects.get(identities__value=email)


def test_merge_queries_do_not_grow_with_the_threads(db, django_assert_max_num_queries):
    small_into, small = _customer_with_threads("a@example.com", 1), _customer_with_threads("b@example.com", 1)
    with django_assert_max_num_queries(60) as small_run:
        merge_customers(source=small, into=small_into)
    big_into, big = _customer_with_threads("c@example.com", 8), _customer_with_threads("d@example.com", 8)
    with django_assert_max_num_queries(len(small_run.captured_queries)):
        merge_customers(source=big, into=big_into)
    assert Conversation.objects.filter(customer=big_into).count() == 16


def test_rows_without_a_reverse_accessor_move_too(db):
    from channels_ingest.models import Campaign, CampaignRecipient

    known = make_customer("john@example.com")
    other = make_customer("johnny@example.com")
    campaign = Campaign.objects.create(name="Spring", subject="Spring menu", body="Hi")
    recipient = CampaignRecipient.objects.create(campaign=campaign, customer=other, email="johnny@example.com")
    merge_customers(source=other, into=known)
    recipient.refresh_from_db()
    assert recipient.customer_id == known.pk
