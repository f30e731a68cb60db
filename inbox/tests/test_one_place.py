"""One customer, one place: one active conversation per customer, older ones shown as
sections of the thread with their own status, status and assignment changes in the timeline."""
import re

import pytest
from django.db import IntegrityError, transaction

from inbox import services
from inbox.models import Conversation
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


def test_the_database_refuses_a_second_active_conversation_for_a_customer(customer):
    Conversation.objects.create(customer=customer, status="open")
    with pytest.raises(IntegrityError), transaction.atomic():
        Conversation.objects.create(customer=customer, status="pending")
    Conversation.objects.create(customer=customer, status="closed")  # any number of finished ones


def test_reopening_an_older_conversation_while_another_is_active_is_refused_naming_it(receive, agent):
    old = receive(text="first").message.conversation
    services.set_status(conversation=old, status="closed", by=agent)
    new = receive(text="second").message.conversation
    assert new.pk != old.pk
    with pytest.raises(services.InvalidTransition) as info:
        services.set_status(conversation=old, status="open", by=agent)
    assert f"#{new.pk}" in info.value.message
    old.refresh_from_db()
    assert old.status == "closed"


def test_an_answer_to_a_resolved_thread_joins_the_active_conversation_instead_of_reopening_it(receive, agent):
    old = receive(text="first").message.conversation
    services.set_status(conversation=old, status="resolved", by=agent)
    services.set_status(conversation=old, status="closed", by=agent)
    new = receive(text="second").message.conversation
    Conversation.objects.filter(pk=old.pk).update(status="resolved")  # resolved recently: reopenable
    joined = receive(text="answer to the old email", conversation=old).message.conversation
    assert joined.pk == new.pk
    assert Conversation.objects.filter(customer=new.customer, status__in=["open", "pending"]).count() == 1


def test_older_conversations_are_marked_sections_with_their_own_status(agent_client, receive, agent):
    old = receive(text="the first question", subject="Party in May").message.conversation
    services.set_status(conversation=old, status="resolved", by=agent)
    services.set_status(conversation=old, status="closed", by=agent)
    new = receive(text="a new question").message.conversation
    page = agent_client.get(f"/inbox/{new.pk}/").content.decode()
    section = re.search(rf'<li class="conv-section" data-conversation="{old.pk}">.*?</details></li>', page, re.S)
    assert section, page
    section = section.group(0)
    assert "<details>" in section  # collapsed: it is finished
    assert f"Earlier conversation #{old.pk}" in section and 'class="status status-closed">Closed<' in section
    assert "the first question" in section and "a new question" not in section
    assert "Alice set it to Resolved" in section  # its own history, inside it


def test_status_and_assignment_changes_appear_in_the_timeline_in_order(agent_client, receive, agent):
    conversation = receive(text="hello").message.conversation
    services.assign(conversation=conversation, assignee=agent, by=agent)
    services.set_status(conversation=conversation, status="pending", by=agent)
    page = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    order = [page.index(text) for text in ("hello", "Alice assigned it to Alice", "Alice set it to Pending")]
    assert order == sorted(order)
    assert page.count('class="item activity"') == 2


def test_opening_the_thread_marks_read_every_conversation_whose_items_it_showed(agent_client, receive, agent):
    old = receive(text="first").message.conversation
    services.set_status(conversation=old, status="closed", by=agent)
    new = receive(text="second").message.conversation
    Conversation.objects.filter(pk=old.pk).update(is_unread=True)  # e.g. a late auto-reply marked it
    agent_client.get(f"/inbox/{new.pk}/")
    assert not Conversation.objects.filter(is_unread=True).exists()
