"""Bulk campaigns and transactional booking mail, sent to the SendGrid stand-in."""
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from channels_ingest.email import campaigns
from channels_ingest.email.services import suppress
from channels_ingest.email.transactional import due_reminders, send_booking_email
from channels_ingest.models import Campaign, CampaignRecipient, SentEmail, Suppression
from channels_ingest.tasks import send_campaign, send_due_reminders
from crm.models import Booking
from tests.factories import make_customer

from .test_email_webhooks import auth


def book(customer, *, days, status=Booking.Status.COMPLETED, guests=10):
    return Booking.objects.create(customer=customer, event_at=timezone.now() + timedelta(days=days),
                                  guest_count=guests, status=status, total=Decimal("900"), deposit=Decimal("100"))


@pytest.fixture
def customers(db):
    gold = make_customer("gold@example.com", "Goldie", "Hawn")
    for i in range(5):
        book(gold, days=-400 - i)
    recent = make_customer("recent@example.com", "Rita", "Moreno")
    book(recent, days=-10)
    never = make_customer("never@example.com", "Nev", "Er")
    return {"gold": gold, "recent": recent, "never": never}


def make_campaign(**fields):
    defaults = {"name": "Spring", "subject": "Hi {{ first_name }}, spring menu!",
                "body": "Dear {{ full_name }}, our {{ loyalty_tier }} guests get 10% off."}
    return Campaign.objects.create(**{**defaults, **fields})


def emails_of(campaign):
    campaigns.prepare_recipients(campaign)
    return set(campaign.recipients.exclude(status="suppressed").values_list("email", flat=True))


def test_segments_pick_the_right_customers(customers):
    assert emails_of(make_campaign(name="all")) == {"gold@example.com", "recent@example.com", "never@example.com"}
    assert emails_of(make_campaign(name="g", segment="loyalty", loyalty_tier="gold")) == {"gold@example.com"}
    assert emails_of(make_campaign(name="n", segment="loyalty", loyalty_tier="none")) == {
        "recent@example.com", "never@example.com"}
    assert emails_of(make_campaign(name="p", segment="past_booking")) == {"gold@example.com", "recent@example.com"}
    assert emails_of(make_campaign(name="l", segment="lapsed", months_without_booking=6)) == {"gold@example.com"}


def test_unknown_merge_fields_and_missing_segment_settings_are_refused(db):
    with pytest.raises(ValidationError) as error:
        make_campaign(body="Hi {{ frist_name }}", segment="lapsed").full_clean()
    assert "frist_name" in str(error.value) and "months_without_booking" in error.value.message_dict


def test_campaign_is_sent_in_batches_with_merge_data_and_unsubscribe_headers(customers, sendgrid, settings):
    settings.EMAIL_CAMPAIGN_BATCH_SIZE = 2
    suppress("never@example.com", reason="unsubscribed")
    campaign = make_campaign()
    assert campaigns.queue(campaign) is True
    send_campaign(campaign.pk)  # what the Celery worker runs

    campaign.refresh_from_db()
    assert campaign.status == "sent"
    assert (campaign.recipients_count, campaign.suppressed_count, campaign.sent_count) == (3, 1, 2)
    assert len(sendgrid.sent) == 1  # two recipients, one batch
    body = sendgrid.sent[0]
    assert body["subject"] == "Hi -first_name-, spring menu!"
    people = {p["to"][0]["email"]: p for p in body["personalizations"]}
    assert set(people) == {"gold@example.com", "recent@example.com"}
    gold = people["gold@example.com"]
    assert gold["substitutions"]["-first_name-"] == "Goldie" and gold["substitutions"]["-loyalty_tier-"] == "gold"
    assert gold["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = gold["substitutions"]["-unsubscribe_url-"]
    assert gold["headers"]["List-Unsubscribe"] == f"<{url}>"
    recipient = CampaignRecipient.objects.get(email="gold@example.com")
    assert recipient.status == "sent" and recipient.esp_message_id == gold["custom_args"]["anymail_id"]
    assert campaigns.queue(campaign) is False  # sending twice is refused


def test_one_click_unsubscribe_and_tracking_fill_the_campaign_figures(customers, sendgrid, client, webhook_secret):
    campaign = make_campaign(segment="past_booking")
    campaigns.queue(campaign)
    send_campaign(campaign.pk)
    gold = CampaignRecipient.objects.get(email="gold@example.com")
    recent = CampaignRecipient.objects.get(email="recent@example.com")
    token = campaigns.unsubscribe_token(email=gold.email, campaign_id=campaign.pk)

    page = client.get(f"/email/unsubscribe/{token}/")
    assert page.status_code == 200 and b"Unsubscribe from My Hibachi news?" in page.content
    assert not Suppression.objects.exists()  # a link scanner opening the page unsubscribes nobody
    one_click = client.post(f"/email/unsubscribe/{token}/", data="List-Unsubscribe=One-Click",
                            content_type="application/x-www-form-urlencoded")
    assert one_click.status_code == 200 and b"You are unsubscribed" in one_click.content
    client.post(f"/email/unsubscribe/{token}/")  # twice counts once
    assert Suppression.objects.get(email="gold@example.com").reason == "unsubscribed"
    assert client.get("/email/unsubscribe/forged-token/").status_code == 400

    events = [
        {"email": gold.email, "event": "delivered", "anymail_id": gold.esp_message_id, "sg_event_id": "1", "timestamp": 1},
        {"email": gold.email, "event": "click", "anymail_id": gold.esp_message_id, "sg_event_id": "2", "timestamp": 2,
         "url": "https://myhibachi.test/menu"},
        {"email": recent.email, "event": "bounce", "anymail_id": recent.esp_message_id, "sg_event_id": "3",
         "timestamp": 3, "reason": "550 gone", "type": "bounce"},
        {"email": gold.email, "event": "click", "anymail_id": gold.esp_message_id, "sg_event_id": "4", "timestamp": 4},
    ]
    response = client.post("/anymail/sendgrid/tracking/", data=json.dumps(events), content_type="application/json",
                           **auth(webhook_secret))
    assert response.status_code == 200
    campaign.refresh_from_db()
    figures = (campaign.sent_count, campaign.delivered_count, campaign.opened_count, campaign.clicked_count,
               campaign.bounced_count, campaign.unsubscribed_count)
    assert figures == (2, 1, 1, 1, 1, 1)
    assert Suppression.objects.get(email="recent@example.com").reason == "bounced"


def test_sendgrid_outage_pauses_the_campaign_and_resumes_without_duplicates(customers, sendgrid):
    campaign = make_campaign()
    campaigns.queue(campaign)
    sendgrid.fail_next(429)
    send_campaign.apply(args=[campaign.pk], throw=False)  # in-process Celery: its retry runs inline
    campaign.refresh_from_db()
    assert campaign.status == "sent" and campaign.sent_count == 3
    accepted = [p["to"][0]["email"] for body in sendgrid.sent for p in body["personalizations"]]
    assert sorted(accepted) == ["gold@example.com", "never@example.com", "recent@example.com"]


def test_campaign_admin_is_for_managers_only(customers, client, agent, manager, sendgrid):
    campaign = make_campaign()
    client.force_login(agent)
    assert client.get("/admin/channels_ingest/campaign/").status_code in (302, 403)
    client.force_login(manager)
    page = client.get("/admin/channels_ingest/campaign/")
    assert page.status_code == 200 and b"Spring" in page.content
    client.post("/admin/channels_ingest/campaign/", {"action": "send_campaign", "_selected_action": [campaign.pk]})
    campaign.refresh_from_db()
    assert campaign.status in ("queued", "sent")


def test_booking_confirmation_is_sent_once_from_our_templates(customers, sendgrid):
    booking = book(customers["never"], days=20, status=Booking.Status.CONFIRMED, guests=14)
    record = send_booking_email(booking, "confirmation")
    assert send_booking_email(booking, "confirmation") is None  # once per booking
    [body] = sendgrid.sent
    assert body["subject"].startswith("Your My Hibachi party on") and "is confirmed" in body["subject"]
    assert "Guests: 14" in body["content"][0]["value"] and body["content"][1]["type"] == "text/html"
    assert record.status == "sent" and record.esp_message_id == body["personalizations"][0]["custom_args"]["anymail_id"]


def test_confirming_a_booking_in_the_admin_emails_the_customer_once(customers, sendgrid, manager_client,
                                                                      django_capture_on_commit_callbacks):
    booking = book(customers["never"], days=30, status=Booking.Status.QUOTED)
    assert sendgrid.sent == []
    confirm = {"action": "booking_confirmed", "_selected_action": [booking.pk]}
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post("/admin/crm/booking/", confirm)
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post("/admin/crm/booking/", confirm)  # already confirmed: no second email
    [body] = sendgrid.sent
    assert body["personalizations"][0]["to"] == [{"email": "never@example.com"}]
    assert "is confirmed" in body["subject"]
    assert SentEmail.objects.get(booking=booking).kind == "confirmation"


def test_no_confirmation_email_when_turned_off_or_for_other_steps(customers, sendgrid, settings,
                                                                  django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        book(customers["never"], days=30, status=Booking.Status.QUOTED)
    settings.EMAIL_BOOKING_CONFIRMATIONS = False
    with django_capture_on_commit_callbacks(execute=True):
        book(customers["recent"], days=30, status=Booking.Status.CONFIRMED)
    assert sendgrid.sent == [] and not SentEmail.objects.exists()


def test_booking_email_uses_a_sendgrid_dynamic_template_when_configured(customers, sendgrid, settings):
    settings.EMAIL_TEMPLATE_IDS = {"confirmation": "d-0123456789abcdef", "reminder": ""}
    booking = book(customers["never"], days=20, status=Booking.Status.CONFIRMED)
    send_booking_email(booking, "confirmation")
    [body] = sendgrid.sent
    assert body["template_id"] == "d-0123456789abcdef"
    assert body["personalizations"][0]["dynamic_template_data"]["guest_count"] == 10


def test_reminders_go_to_confirmed_bookings_within_the_window_once(customers, sendgrid):
    soon = book(customers["never"], days=1, status=Booking.Status.CONFIRMED)
    book(customers["recent"], days=10, status=Booking.Status.CONFIRMED)  # too far ahead
    assert list(due_reminders()) == [soon]
    assert send_due_reminders() == 1
    assert send_due_reminders() == 0
    assert SentEmail.objects.get(kind="reminder").booking == soon
    assert "Reminder" in sendgrid.sent[0]["subject"]


def test_hard_bounced_customers_get_no_transactional_mail(customers, sendgrid):
    suppress("never@example.com", reason="bounced")
    booking = book(customers["never"], days=1, status=Booking.Status.CONFIRMED)
    assert send_booking_email(booking, "reminder") is None
    assert sendgrid.sent == []
