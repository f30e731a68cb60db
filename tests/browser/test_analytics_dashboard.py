"""The analytics dashboard in headless Chromium: charts drawn, cards and tables agree,
presets move the range, and an agent's page shows only their own figures."""
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from analytics.tests.helpers import booking
from tests.factories import make_customer, make_user

from .conftest import screenshot

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
