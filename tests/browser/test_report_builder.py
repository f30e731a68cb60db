"""The report builder in headless Chromium: a manager builds a report, sees its table and chart,
saves it, and opens it again from the saved list."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from analytics.models import SavedReport
from analytics.tests.helpers import booking
from tests.factories import make_customer, make_user

from .conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]


def test_a_manager_builds_saves_and_reopens_a_report(live, sign_in):
    make_user("morgan", role="Manager", first_name="Morgan")
    now = timezone.now() - timedelta(days=3)
    for source, total in (("website", 1200), ("yelp", 800), ("yelp", 400)):
        booking(make_customer(f"{source}{total}@example.com"), status="confirmed", source=source, confirmed_at=now,
                event_at=now + timedelta(days=30), total=total)
    page = sign_in("morgan").page
    page.goto("/analytics/builder/")
    page.evaluate("() => { window.refused = []; document.addEventListener('securitypolicyviolation', "
                  "e => window.refused.push(e.violatedDirective + ' ' + e.sourceFile)); }")
    page.get_by_label("Measure").select_option("booked_revenue")
    # Choosing the measure swaps in the choices it takes (htmx): source is one, agent is not.
    expect(page.locator("#measure-definition")).to_contain_text("by local confirmation date")
    expect(page.locator("#dimension-1 option[value=agent]")).to_have_count(0)
    page.get_by_label("First").select_option("source")
    page.get_by_label("Range").select_option("last_12_months")
    page.get_by_role("button", name="Run report").click()

    table = page.locator("table.report-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tbody tr").nth(0)).to_have_text(re.compile(r"Website\s*\$1,200\.00"))
    expect(table.locator("tbody tr").nth(1)).to_have_text(re.compile(r"Yelp\s*\$1,200\.00"))
    expect(page.locator(".report-total")).to_have_text("$2,400.00")
    assert "measure=booked_revenue" in page.url  # the report on screen is a link
    page.wait_for_function("() => !!document.querySelector('canvas.builder-chart')?.chart")
    page.get_by_label("Then").select_option("month")  # a second swap redraws over the first chart
    page.get_by_role("button", name="Run report").click()
    expect(table.locator("thead th")).to_have_count(13)  # Source \ Month, then 12 months
    page.wait_for_function("() => document.querySelector('canvas.builder-chart')?.chart?.data.datasets.length === 12")
    assert page.evaluate("window.refused") == []  # nothing the page's CSP had to stop
    page.get_by_label("Then").select_option("")
    page.get_by_role("button", name="Run report").click()
    expect(table.locator("thead th")).to_have_count(2)
    page.locator("#report").scroll_into_view_if_needed()
    screenshot(page, "report-builder.png", docs=True)

    page.get_by_label("Name").fill("Booked by source")
    page.get_by_label("Share with managers").check()
    page.get_by_role("button", name="Save as…").click()
    expect(page.locator(".loaded")).to_contain_text("Booked by source")
    report = SavedReport.objects.get()
    assert report.shared and report.spec["dimensions"] == ["source"]
    assert page.url.endswith(f"/analytics/builder/?report={report.pk}")

    page.goto("/analytics/builder/")
    expect(page.locator("table.report-table")).to_have_count(0)
    page.get_by_role("link", name="Booked by source").click()
    expect(page.locator("table.report-table tbody tr")).to_have_count(2)
    expect(page.get_by_label("Measure")).to_have_value("booked_revenue")
    expect(page.locator(".report-total")).to_have_text("$2,400.00")
