import pytest
from django.contrib import admin


def test_manager_reaches_the_admin(manager_client):
    assert manager_client.get("/admin/").status_code == 200


def test_agent_is_kept_out_of_the_admin_even_with_is_staff(agent_client, agent):
    agent.is_staff = True
    agent.save()
    response = agent_client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_anonymous_is_sent_to_login(client, db):
    assert client.get("/admin/crm/customer/").status_code == 302


@pytest.mark.parametrize("model", [m for m in admin.site._registry if m._meta.app_label in ("crm", "inbox")],
                         ids=lambda m: m._meta.label)
def test_every_admin_list_opens_for_a_manager(manager_client, manager, rf, model):
    from django.core.management import call_command
    from io import StringIO

    call_command("seed_demo", customers=3, stdout=StringIO(), stderr=StringIO())
    url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    if admin.site._registry[model].internal:  # the software's own records: superusers only
        assert manager_client.get(url).status_code == 403
        return
    assert manager_client.get(url).status_code == 200
    request = rf.get(url)
    request.user = manager
    can_add = admin.site._registry[model].has_add_permission(request)
    assert manager_client.get(url + "add/").status_code == (200 if can_add else 403)


def test_export_selected_rows_to_csv(manager_client):
    from tests.factories import make_customer

    customer = make_customer("=cmd@example.com", first_name="=HYPERLINK(1)")
    response = manager_client.post("/admin/crm/customer/", {"action": "export_as_csv",
                                                            "_selected_action": [customer.pk]})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    body = response.content.decode()
    assert "'=HYPERLINK(1)" in body  # spreadsheet formulas are neutralised


def test_bulk_status_action_uses_the_inbox_rules(manager_client):
    from inbox import services

    from tests.factories import make_customer

    make_customer("a@example.com")
    received = services.receive_message(channel="email", sender="a@example.com", text="hi", external_id="x1")
    conversation = received.message.conversation
    response = manager_client.post("/admin/inbox/conversation/", {"action": "mark_resolved",
                                                                  "_selected_action": [conversation.pk]})
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.status == "resolved" and conversation.resolved_at is not None


def test_booking_status_action_stamps_the_step_time(manager_client):
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from crm.models import Booking
    from tests.factories import make_customer

    booking = Booking.objects.create(customer=make_customer(), event_at=timezone.now() + timedelta(days=9),
                                     guest_count=12, total=Decimal("720"))
    response = manager_client.post("/admin/crm/booking/", {"action": "booking_confirmed",
                                                           "_selected_action": [booking.pk]})
    assert response.status_code == 302
    booking.refresh_from_db()
    assert booking.status == "confirmed" and booking.confirmed_at is not None


@pytest.mark.parametrize("model", [m for m, a in admin.site._registry.items()
                                   if m._meta.app_label in ("crm", "inbox", "channels_ingest")
                                   and any(f.name in ("created_at", "created") for f in m._meta.fields)],
                         ids=lambda m: m._meta.label)
def test_creation_times_are_read_only(manager, rf, model):
    request = rf.get("/admin/")
    request.user = manager
    names = {f.name for f in model._meta.fields}
    readonly = admin.site._registry[model].get_readonly_fields(request)
    assert ({"created_at", "created"} & names) <= set(readonly)


def test_a_creation_time_shows_as_text_on_the_change_form(manager_client):
    from tests.factories import make_customer

    customer = make_customer()
    page = manager_client.get(f"/admin/crm/customer/{customer.pk}/change/").content.decode()
    assert "Created at" in page and 'name="created_at_0"' not in page


def test_people_are_named_as_in_the_inbox(manager_client, agent):
    from inbox import services
    from tests.factories import make_customer

    agent.last_name = "Kim"
    agent.save()
    customer = make_customer()
    conversation = services.receive_message(channel="email", sender="john@example.com", text="hi",
                                            external_id="named-1").message.conversation
    services.assign(conversation=conversation, assignee=agent, by=agent)
    page = manager_client.get("/admin/inbox/conversation/").content.decode()
    assert '<td class="field-assigned_to">Alice Kim</td>' in page
    assert f'?assignee__id__exact={agent.pk}">Alice Kim</a>' in page  # the filter
    page = manager_client.get(f"/admin/inbox/conversation/{conversation.pk}/change/").content.decode()
    assert f'<option value="{agent.pk}" selected>Alice Kim</option>' in page
    assert customer.pk == conversation.customer_id
