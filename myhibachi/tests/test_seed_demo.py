import re
from io import StringIO

from django.core.management import call_command

from crm.models import Booking, Customer, CustomerIdentity, Lead, MarketingSpend
from inbox.models import CannedResponse, Conversation, Message, Note, RoutingRule


def _counts():
    return {model.__name__: model.objects.count() for model in
            (Customer, CustomerIdentity, Booking, Lead, MarketingSpend, Conversation, Message, Note,
             CannedResponse, RoutingRule, Conversation.tags.through)}


def test_seed_demo_twice_creates_nothing_the_second_time(db):
    call_command("seed_demo", customers=30, stdout=StringIO(), stderr=StringIO())
    first = _counts()
    call_command("seed_demo", customers=30, stdout=StringIO(), stderr=StringIO())
    assert _counts() == first
    assert first["Customer"] == 30
    assert first["Conversation"] == 150
    assert set(Message.objects.values_list("channel", flat=True)) == {"email", "sms", "chat", "call"}
    assert not Conversation.objects.filter(last_message__isnull=True).exists()
    # Tagged as the demo pricing rule tags a conversation whose first message asks about price.
    asks_price = {c.pk for c in Conversation.objects.all()
                  if re.search(r"\b(price|quote|cost)\b", c.messages.order_by("created_at", "id").first().text, re.I)}
    assert 0 < len(asks_price) < first["Conversation"]
    assert set(Conversation.objects.filter(tags__name="pricing").values_list("pk", flat=True)) == asks_price


def test_a_larger_scale_adds_only_the_difference(db):
    call_command("seed_demo", customers=10, stdout=StringIO(), stderr=StringIO())
    call_command("seed_demo", customers=25, stdout=StringIO(), stderr=StringIO())
    assert Customer.objects.count() == 25
    assert CustomerIdentity.objects.filter(kind="email").count() == 25


def test_print_logins_gives_working_demo_logins(db, client, settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", customers=1, print_logins=True, stdout=out, stderr=StringIO())
    assert "username: manager" in out.getvalue()
    assert client.login(username="manager", password="hibachi-manager-demo")
    assert client.get("/admin/").status_code == 200


def test_demo_data_agrees_with_itself(db):
    """What a new agent reads in the demo could have happened: calls are the only
    "missed call" lines, only email is ever "opened", nobody @-mentions themselves,
    and bookings have an address for the profile panel."""
    call_command("seed_demo", customers=60, stdout=StringIO())
    assert Message.objects.filter(channel="call").exists()
    assert not Message.objects.filter(text__icontains="missed call").exclude(channel="call").exists()
    assert Message.objects.filter(delivery_status="opened", channel="email").exists()
    assert not Message.objects.filter(delivery_status="opened").exclude(channel="email").exists()
    mentions = [(n.body, n.author.username) for n in Note.objects.select_related("author") if "@" in n.body]
    assert mentions and all(f"@{author} " not in f"{body} " for body, author in mentions)
    assert not Booking.objects.filter(address="").exists()


def test_seed_demo_gives_each_customer_one_active_conversation_at_most(db):
    """Demo data once gave Luis Nguyen four open conversations; the inbox showed him four times."""
    from django.db.models import Count

    call_command("seed_demo", customers=60, stdout=StringIO(), stderr=StringIO())
    per_customer = (Conversation.objects.filter(status__in=["open", "pending"]).values("customer")
                    .annotate(n=Count("id")).values_list("n", flat=True))
    assert per_customer and max(per_customer) == 1
    assert Conversation.objects.filter(status__in=["resolved", "closed"]).exists()
