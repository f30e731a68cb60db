"""The lean list rows (inbox/rows.py) against the documented API shape."""
import json
import re

import pytest
from django.db import connection
from rest_framework.renderers import JSONRenderer

from crm.models import Customer
from inbox import rows, selectors, services
from inbox.api.serializers import ConversationRowSerializer
from inbox.models import Conversation, Tag
from tests.factories import make_customer, make_user


def as_json(data):
    return json.loads(JSONRenderer().render(data))


@pytest.fixture
def varied_rows(receive):
    """Conversations that differ in every optional part of a row."""
    plain = receive(sender="plain@example.com", text="  Hello   there,\n\nparty for 12?  ").message.conversation
    by_phone = receive(sender="+1 415 555 0100", channel="sms", text="").message.conversation
    by_phone.last_message.subject = "Only a subject"  # a preview falls back to the subject
    by_phone.last_message.save(update_fields=["subject"])
    worked = receive(sender="worked@example.com", text="x" * 500).message.conversation
    staff = make_user("sam", first_name="Sam", last_name="Lee")
    services.assign(conversation=worked, assignee=staff)
    services.reply(conversation=worked, author=staff, text="On our way")
    services.set_status(conversation=worked, status="resolved")
    worked.tags.add(Tag.objects.create(name="vip"), Tag.objects.create(name="allergy"))
    nameless = receive(sender="anon@example.com").message.conversation
    Customer.objects.filter(pk=nameless.customer_id).update(first_name="", last_name="")
    usernamed = make_user("kim", first_name="", last_name="")
    services.assign(conversation=nameless, assignee=usernamed)
    # No message yet (a customer of its own: a customer has one active conversation at most).
    empty = Conversation.objects.create(customer=make_customer("empty@example.com", first_name="Em"))
    return [plain, by_phone, worked, nameless, empty]


def test_row_api_shape_equals_the_documented_serializer(varied_rows):
    for conversation in varied_rows:
        instance = Conversation.objects.select_related("customer", "assignee", "last_message").get(
            pk=conversation.pk)
        documented = as_json(ConversationRowSerializer(instance).data)
        assert as_json(selectors.list_row(conversation.pk).as_api()) == documented, conversation.pk


def test_rows_carry_what_the_screen_shows(varied_rows):
    plain, by_phone, worked, nameless, empty = varied_rows
    row = selectors.list_row(worked.pk)
    assert row.tags == ["allergy", "vip"]
    assert row.assignee.name == "Sam Lee" and row.assignee_id == row.assignee.id
    assert row.get_status_display() == "Resolved"
    assert row.last_message.direction == "outbound"
    assert selectors.list_row(nameless.pk).customer.name == "Unknown customer"
    assert selectors.list_row(nameless.pk).assignee.name == "kim"
    assert selectors.list_row(plain.pk).last_message.preview == "Hello there, party for 12?"
    assert selectors.list_row(by_phone.pk).last_message.preview == "Only a subject"
    assert [i.value for i in selectors.list_row(by_phone.pk).customer.identity_list] == ["+14155550100"]
    assert selectors.list_row(empty.pk).last_message is None


def test_unknown_row_is_does_not_exist(db):
    with pytest.raises(Conversation.DoesNotExist):
        selectors.list_row(987654)


def test_a_page_of_rows_costs_the_same_queries_for_any_size(receive, django_assert_num_queries):
    for n in range(30):
        receive(sender=f"guest{n}@example.com")
    # PostgreSQL: one statement, identities, tags and channels as arrays beside each row
    expected = 1 if connection.vendor == "postgresql" else 4
    for size in (1, 25):
        with django_assert_num_queries(expected):
            page = selectors.page_by_activity(selectors.conversations_for_list(), size=size)
        assert len(page.rows) == size


def test_list_page_escapes_what_customers_typed(agent_client, receive):
    conversation = receive(sender="mallory@example.com", text='<img src=x onerror="alert(1)"> hi').message.conversation
    Customer.objects.filter(pk=conversation.customer_id).update(first_name="<b>Mal</b>", last_name="O'Ry")
    page = agent_client.get("/inbox/").content.decode()
    assert "&lt;b&gt;Mal&lt;/b&gt; O&#39;Ry" in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; hi" in page
    assert "<b>Mal" not in page and "<img src=x" not in page
    for action in ("assign", "status"):  # the row's forms work without JavaScript too
        assert re.search(rf'action="/inbox/{conversation.pk}/{action}"[^>]*><input type="hidden" '
                         r'name="csrfmiddlewaretoken" value="\w{64}">', page)


def test_no_ids_no_rows(receive):
    receive()
    assert rows.load(Conversation.objects.filter(pk__in=[])) == []
    assert rows.load(Conversation.objects.filter(status="closed")) == []
