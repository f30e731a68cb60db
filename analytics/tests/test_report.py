"""GET /analytics/report.pdf: the dashboard's areas on paper, for managers; figures equal to the API's,
labels from outside printed as text, charts that show, and a renderer that fetches nothing."""
import http.server
import threading
from datetime import date

import pypdfium2 as pdfium
import pytest

from analytics import refresh, report, views
from analytics.templatetags.analytics_format import change, figure
from analytics.tests.helpers import booking, local, pay
from crm.models import Lead, MarketingSpend
from tests.factories import make_customer, make_user
from tests.screenshots import save as save_picture

pytestmark = pytest.mark.django_db
RANGE = "start=2025-01-01&end=2025-03-31&interval=month"


@pytest.fixture(autouse=True)
def la(settings):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    settings.BUSINESS_NAME = "My Hibachi"
    settings.ANALYTICS_REFRESH_SECONDS = 0


@pytest.fixture
def quarter():
    """Q1 2025 worked out by hand (February stays empty):
    booked (by confirmation): 1,000 in January + 1,500 in March = $2,500.00;
    event (completed, by event date): 1,000 in March = $1,000.00;
    cash: 200 deposit + 800 balance - 100 refund = $900.00;
    inquiries: 3 (two in January, one in March), one completed: conversion 1/3 = 33.3%;
    leads: yelp (its booking completed: 1,000 - 100 refund = 900 net) with $300 January spend: ROI 3.00x,
    and two leads from sources typed elsewhere, "<script>" and "R&D"."""
    a = booking(make_customer(), status="completed", inquiry_at=local(2025, 1, 5, 10), quoted_at=local(2025, 1, 6, 10),
                confirmed_at=local(2025, 1, 10, 12), event_at=local(2025, 3, 20, 18), total=1000, source="yelp")
    pay(a, "deposit", 200, local(2025, 1, 10, 12))
    pay(a, "balance", 800, local(2025, 3, 20, 21))
    pay(a, "refund", 100, local(2025, 3, 22, 9))
    booking(make_customer("b@example.com"), status="confirmed", inquiry_at=local(2025, 3, 1, 9),
            confirmed_at=local(2025, 3, 5, 9), event_at=local(2025, 5, 1, 18), total=1500)
    booking(make_customer("c@example.com"), status="lost", inquiry_at=local(2025, 1, 15, 9),
            event_at=local(2025, 2, 14, 18), total=900, lost="date_unavailable")
    Lead.objects.create(source="yelp", booking=a, status="converted", created_at=local(2025, 1, 4, 9))
    Lead.objects.create(source="<script>", created_at=local(2025, 2, 10, 9))  # not a choice: came from outside
    Lead.objects.create(source="R&D", created_at=local(2025, 2, 11, 9))
    MarketingSpend.objects.create(source="yelp", month=date(2025, 1, 1), amount=300)


def pdf_text(content: bytes) -> list:
    document = pdfium.PdfDocument(content)
    return [document[i].get_textpage().get_text_range().replace("\r\n", "\n") for i in range(len(document))]


def test_the_report_carries_the_headline_figures_of_the_api(manager_client, quarter, settings,
                                                            django_assert_max_num_queries):
    refresh.refresh_all()
    settings.ANALYTICS_REFRESH_SECONDS = 3600  # the rollups are fresh: count the report's own reads
    with django_assert_max_num_queries(47):  # session, user, groups, the rollup check, the ten areas
        response = manager_client.get(f"/analytics/report.pdf?{RANGE}")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="myhibachi-analytics-2025-01-01-2025-03-31.pdf"'
    pages = pdf_text(response.content)
    text = "\n".join(pages)
    assert "My Hibachi — analytics report" in pages[0]
    assert "Jan 1, 2025 – Mar 31, 2025, by month" in pages[0] and "America/Los_Angeles" in pages[0]
    # The hand-worked figures...
    for figure_text in ("$2,500.00", "$1,000.00", "$900.00", "33.3%", "3.00×"):
        assert figure_text in text
    # ...are the API's for the same range, card by card.
    api = {name: manager_client.get(f"/api/v1/analytics/{name}?{RANGE}").json()
           for name, *_ in views.SECTIONS}
    for card in views.cards(api):
        assert f"{card['label']}\n{figure(card['value'], card['kind'])}" in text, card
        if card.get("change") is not None:
            assert change(card["change"], card.get("against", "previous period")) in text
    # Every period is listed, the empty February too; pages are numbered.
    assert "2025-02-01 $0.00 $0.00 $0.00 $0.00" in text
    assert f"Page 1 of {len(pages)}" in pages[0] and f"Page {len(pages)} of {len(pages)}" in pages[-1]


def test_sources_typed_elsewhere_are_printed_as_text(manager_client, quarter):
    text = "\n".join(pdf_text(manager_client.get(f"/analytics/report.pdf?{RANGE}").content))
    # In the leads-by-source chart (its x axis) and in the table under it.
    assert text.count("<script>") == 2 and text.count("R&D") == 2


def test_page_one_shows_a_drawn_chart(manager_client, quarter):
    page = pdfium.PdfDocument(manager_client.get(f"/analytics/report.pdf?{RANGE}").content)[0]
    scale = 2
    image = page.render(scale=scale).to_pil().convert("RGB")
    save_picture("analytics-report.png", image.save, docs=True)
    # The revenue chart's plot sits above its x axis title ("Month", the first on the page).
    search = page.get_textpage().search("Month", match_case=True, match_whole_word=True)
    index, _ = search.get_next()
    left, bottom, right, top = page.get_textpage().get_charbox(index)
    plot_bottom = (page.get_height() - top) * scale
    band = image.crop((0, int(plot_bottom - 110 * scale), image.width, int(plot_bottom)))
    # Grid and text are grey or black: coloured pixels are the lines of the series.
    coloured = sum(1 for r, g, b in band.get_flattened_data() if max(r, g, b) - min(r, g, b) > 60)
    assert coloured > 500, coloured


@pytest.mark.parametrize("who, status", [("stranger", 302), ("agent", 403), ("no-group", 403)])
def test_only_managers_get_the_report(client, who, status):
    if who == "agent":
        client.force_login(make_user("alice", role="Agent"))
    elif who == "no-group":
        client.force_login(make_user("nobody", role=None))
    response = client.get(f"/analytics/report.pdf?{RANGE}")
    assert response.status_code == status
    if status == 302:
        assert "/login/" in response["Location"]


@pytest.mark.parametrize("query", [
    "start=2025-13-01", "start=2025-02-01&end=2025-01-01", "start=2000-01-01&end=2025-01-01", "interval=hour",
])
def test_a_bad_range_gets_the_apis_400(manager_client, query):
    response = manager_client.get(f"/analytics/report.pdf?{query}")
    assert response.status_code == 400
    assert response.content.decode() == manager_client.get(f"/api/v1/analytics/revenue?{query}").json()["message"]


def test_a_table_too_long_for_paper_says_which_grain_to_choose(manager_client):
    response = manager_client.get("/analytics/report.pdf?start=2025-01-01&end=2025-12-31&interval=day")
    assert response.status_code == 400
    assert response.content.decode() == ("The PDF report lists every period, and 365 days by day are 365 periods "
                                         "(at most 125): choose week or month.")


def test_without_an_interval_the_grain_follows_the_length_as_on_the_dashboard_and_a4_is_a4(manager_client):
    response = manager_client.get("/analytics/report.pdf?start=2025-01-01&end=2025-12-31&paper=a4")
    assert response.status_code == 200
    assert "Jan 1, 2025 – Dec 31, 2025, by month" in pdf_text(response.content)[0]
    assert [round(x) for x in pdfium.PdfDocument(response.content)[0].get_size()] == [595, 842]  # A4 in points
    assert manager_client.get("/analytics/report.pdf?paper=a3").content == b"'paper' must be one of letter, a4, got 'a3'."


class CountingServer:
    def __init__(self):
        self.hits = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args):
                return None

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


def test_the_renderer_fetches_no_url():
    from weasyprint import HTML

    server = CountingServer()
    try:
        html = (f'<link rel="stylesheet" href="{server.url}/style.css"><img src="{server.url}/pixel.png">'
                f'<svg xmlns="http://www.w3.org/2000/svg"><image href="{server.url}/in-svg.png" width="9" height="9"/>'
                '</svg><img src="file:///etc/hostname"><p>text</p>')
        HTML(string=html).write_pdf()
        assert server.hits, "without the fetcher WeasyPrint does fetch (the test sees it)"
        server.hits.clear()
        assert report.render_pdf(html).startswith(b"%PDF")
        assert server.hits == []
    finally:
        server.server.shutdown()
    fetcher = report.url_fetcher()
    for url in (f"{server.url}/x", "file:///etc/hostname", "https://example.com/font.woff"):
        with pytest.raises(ValueError):
            fetcher.fetch(url)
    assert fetcher.fetch("data:text/plain,ok").read() == b"ok"


def test_the_dashboard_links_managers_to_the_pdf_of_its_range(client, manager, agent):
    client.force_login(manager)
    html = client.get("/analytics/?preset=custom&start=2025-01-01&end=2025-03-31&interval=week").content.decode()
    assert ('href="/analytics/report.pdf?start=2025-01-01&amp;end=2025-03-31&amp;interval=week" data-pdf download>'
            'Download PDF</a>') in html
    client.force_login(agent)
    assert "Download PDF" not in client.get("/analytics/").content.decode()
