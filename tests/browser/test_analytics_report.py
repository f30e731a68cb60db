"""The dashboard's Download PDF link in headless Chromium: it carries the range on the screen and
the browser saves the report under its dated name."""
import pytest
from playwright.sync_api import expect

from analytics.tests.helpers import booking, local
from tests.factories import make_customer, make_user

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]


def test_download_pdf_carries_the_range_on_screen(live, sign_in, tmp_path):
    make_user("morgan", role="Manager", first_name="Morgan")
    booking(make_customer(), status="confirmed", confirmed_at=local(2025, 2, 3, 12), event_at=local(2025, 4, 5, 18),
            total=1500)
    page = sign_in("morgan").page
    page.goto("/analytics/")
    page.get_by_label("From", exact=True).fill("2025-01-01")
    page.get_by_label("To", exact=True).fill("2025-03-31")
    page.locator("select[name=interval]").select_option("month")
    page.get_by_role("button", name="Show").click()
    link = page.get_by_role("link", name="Download PDF")
    expect(link).to_have_attribute("href", "/analytics/report.pdf?start=2025-01-01&end=2025-03-31&interval=month")
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "myhibachi-analytics-2025-01-01-2025-03-31.pdf"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    content = saved.read_bytes()
    assert content.startswith(b"%PDF-")

    import pypdfium2 as pdfium

    first_page = pdfium.PdfDocument(content)[0].get_textpage().get_text_range()
    assert "Jan 1, 2025 – Mar 31, 2025, by month" in first_page and "$1,500.00" in first_page
