"""The analytics dashboard in headless Chromium: charts drawn, cards and tables agree,
presets move the range, and an agent's page shows only their own figures."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from analytics.tests.helpers import booking
from tests.factories import make_customer, make_user

from inbox import services

from .conftest import in_thread, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]


def test_a_manager_sees_cards_charts_and_tables(live, sign_in):
    make_user("morgan", role="Manager", first_name="Morgan")
    now = timezone.now()
    booking(make_customer(), status="confirmed", confirmed_at=now, event_at=now + timedelta(days=9), total=1500)
    manager = sign_in("morgan")
    page = manager.page
    page.goto("/analytics/?preset=last_12_months")
    expect(page.locator('[data-card="Booked revenue"] .card-value')).to_have_text("$1,500.00")
    expect(page.locator("#revenue table tbody tr")).to_have_count(12)
    # Every chart was drawn by Chart.js from the page's data (no CDN, no inline script).
    drawn = page.evaluate("[...document.querySelectorAll('canvas[data-chart]')].map(c => !!c.chart)")
    assert drawn and all(drawn)
    page.get_by_role("link", name="Last month").click()
    expect(page.locator(".preset.active")).to_have_text("Last month")
    screenshot(page, "analytics-dashboard.png", docs=True)


def test_an_agent_sees_only_their_own_figures(live, sign_in):
    make_user("alice", role="Agent", first_name="Alice")
    agent = sign_in("alice")
    agent.page.goto("/analytics/")
    expect(agent.page.get_by_role("heading", name="My performance")).to_be_visible()
    expect(agent.page.locator(".figure-card")).to_have_count(0)
    expect(agent.page.locator("section.area#revenue")).to_have_count(0)


def test_the_dashboard_follows_a_new_conversation_live(live, sign_in, settings):
    settings.INBOX_SENDERS = {**settings.INBOX_SENDERS, "sms": "tests.senders.record"}  # as the live server has
    morgan = make_user("morgan", role="Manager", first_name="Morgan")
    page = sign_in("morgan").page
    page.goto("/analytics/?preset=this_month")
    expect(page.locator(".analytics")).to_have_attribute("data-live", "live")
    card = page.locator('[data-card="First response (median)"] .card-value')
    expect(card).to_have_text("—")
    received = in_thread(services.receive_message, channel="sms", sender="+14155550123", text="Party for 12?",
                         external_id="live-analytics-1")
    in_thread(services.reply, conversation=received.message.conversation, author=morgan, text="Yes!", channel="sms")
    # Within seconds, without a reload by the person: the wait was answered in well under a minute.
    expect(card).to_have_text(re.compile(r"^\d+ s$"), timeout=15_000)
    assert page.evaluate("window.analyticsLive.reloads") >= 1


def test_a_new_booking_reaches_an_open_dashboard(live, sign_in):
    make_user("morgan", role="Manager", first_name="Morgan")
    page = sign_in("morgan").page
    page.goto("/analytics/?preset=this_month")
    expect(page.locator(".analytics")).to_have_attribute("data-live", "live")
    card = page.locator('[data-card="Booked revenue"] .card-value')
    expect(card).to_have_text("$0.00")
    now = timezone.now()
    # Booked from outside the inbox (the admin, the website): no message, only the booking's hint.
    in_thread(booking, make_customer(), status="confirmed", confirmed_at=now, event_at=now + timedelta(days=9),
              total=2400)
    expect(card).to_have_text("$2,400.00", timeout=15_000)
