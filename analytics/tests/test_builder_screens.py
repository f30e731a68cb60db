"""/analytics/builder/: the form runs the same checked spec as the API, shows a table and a chart,
exports the rows, saves and reloads reports; managers only, a constant number of queries."""
import csv
import io
import json
import re

import pytest

from analytics.models import SavedReport
from analytics.tests.test_builder import JUNE, Q1, inbox_team, la, shop  # noqa: F401 (fixtures)
from tests.factories import make_user

pytestmark = pytest.mark.django_db
URL = "/analytics/builder/"
BY_SOURCE_AND_MONTH = {"measure": "booked_revenue", "dimension": ["source", "month"], "preset": "custom",
                       "start": Q1["start"], "end": Q1["end"]}


def table_text(response):
    """The report table's cells, row by row, as text."""
    html = response.content.decode()
    body = re.search(r'<table class="report-table">(.*?)</table>', html, re.S).group(1)
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_a_two_dimension_report_is_a_grid_with_its_chart(manager_client, shop):
    response = manager_client.get(URL, BY_SOURCE_AND_MONTH)
    assert response.status_code == 200
    assert table_text(response) == [
        ["Source \\ Month", "Jan 2026", "Feb 2026", "Mar 2026"],
        ["Website", "$3,000.00", "$0.00", "$0.00"],
        ["Yelp", "$0.00", "$2,000.00", "$0.00"],
    ]
    chart = response.context["chart"]
    assert chart["type"] == "bar" and chart["labels"] == ["Website", "Yelp"]
    assert [(d["label"], d["data"]) for d in chart["datasets"]] == [
        ("Jan 2026", [3000.0, 0.0]), ("Feb 2026", [0.0, 2000.0]), ("Mar 2026", [0.0, 0.0])]
    html = response.content.decode()
    assert 'data-chart="{&quot;type&quot;: &quot;bar&quot;' in html and "<script>" not in html  # data, not script
    assert "Content-Security-Policy" in response


def test_a_one_dimension_report_and_its_csv(manager_client, shop):
    params = {"measure": "event_revenue", "dimension": ["loyalty_tier", ""], "preset": "custom", **Q1}
    response = manager_client.get(URL, params)
    assert table_text(response) == [["Loyalty tier", "Event-date revenue"], ["None", "$1,500.00"],
                                     ["Silver", "$3,500.00"]]
    exported = manager_client.get(response.context["csv_url"])
    assert exported["Content-Type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode()))) == [
        ["loyalty_tier", "event_revenue"], ["none", "1500.00"], ["silver", "3500.00"]]


def test_htmx_gets_only_the_form_and_the_report(manager_client, shop):
    response = manager_client.get(URL, BY_SOURCE_AND_MONTH, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="builder")
    html = response.content.decode()
    assert html.startswith('<form id="builder-form"') and "Saved reports" not in html and "<html" not in html


def test_a_bad_choice_is_a_400_that_says_why(manager_client):
    response = manager_client.get(URL, {"measure": "replies", "dimension": ["agent", "channel", "month"]})
    assert response.status_code == 400
    assert "At most 2 dimensions, got 3." in response.content.decode()
    forged = manager_client.get(URL, {"measure": "booked_revenue", "filter_source": "source; DROP TABLE x"})
    assert forged.status_code == 400
    assert "&#x27;source; DROP TABLE x&#x27; is not a source" in forged.content.decode()


def test_a_choice_left_from_another_measure_is_dropped_with_a_note(manager_client, shop):
    response = manager_client.get(URL, {"measure": "booked_revenue", "dimension": ["agent", ""], "filter_agent": "1",
                                        "preset": "custom", **Q1})
    assert response.status_code == 200
    assert response.context["notes"] == ["Booked revenue cannot be split by agent; left out.",
                                         "Booked revenue cannot be filtered by agent; that filter is left out."]
    assert table_text(response) == [["", "Booked revenue"], ["Booked revenue", "$5,000.00"]]


def test_save_as_then_reload_and_share(manager_client, manager, shop, client):
    page = manager_client.get(URL, BY_SOURCE_AND_MONTH)
    saved = manager_client.post("/analytics/builder/save", {"name": "Q1 by source", "spec": page.context["spec_json"],
                                                            "shared": "on"})
    report = SavedReport.objects.get()
    assert saved.status_code == 302 and saved["Location"] == f"{URL}?report={report.pk}"
    assert (report.owner, report.shared) == (manager, True)
    again = manager_client.get(saved["Location"])
    assert table_text(again) == table_text(page)
    assert "Q1 by source" in again.content.decode() and again.context["can_change"]
    duplicate = manager_client.post("/analytics/builder/save", {"name": "Q1 by source",
                                                                "spec": page.context["spec_json"]})
    assert duplicate.status_code == 400 and "You already have a report called" in duplicate.content.decode()

    olivia = make_user("olivia", role="Manager", first_name="Olivia")
    client.force_login(olivia)
    theirs = client.get(f"{URL}?report={report.pk}")
    assert theirs.status_code == 200 and not theirs.context["can_change"]
    assert client.post(f"/analytics/builder/{report.pk}", {"action": "delete"}).status_code == 403
    report.shared = False
    report.save()
    assert client.get(f"{URL}?report={report.pk}").status_code == 404
    assert SavedReport.objects.filter(pk=report.pk).exists()


def test_the_owner_saves_changes_and_deletes(manager_client, manager):
    report = SavedReport.objects.create(owner=manager, name="Leads", spec={"measure": "leads", "range": Q1})
    spec = json.dumps({"measure": "leads", "dimensions": ["source"], "range": Q1})
    changed = manager_client.post(f"/analytics/builder/{report.pk}", {"action": "save", "spec": spec, "shared": "on"})
    assert changed.status_code == 302
    report.refresh_from_db()
    assert report.spec["dimensions"] == ["source"] and report.shared
    assert manager_client.post(f"/analytics/builder/{report.pk}", {"action": "delete"}).status_code == 302
    assert not SavedReport.objects.exists()


def test_a_saved_spec_this_version_cannot_run_shows_why(manager_client, manager):
    report = SavedReport.objects.create(owner=manager, name="Old", spec={"measure": "profit", "dimensions": []})
    response = manager_client.get(f"{URL}?report={report.pk}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "The report “Old” was saved with a spec this version cannot run: Unknown measure &#x27;profit&#x27;" in html
    assert "needs choosing again" in html


def test_the_dashboard_links_managers_to_the_builder(manager_client):
    assert 'href="/analytics/builder/">Report builder</a>' in manager_client.get("/analytics/").content.decode()


def test_agents_are_refused_and_strangers_sent_to_log_in(agent_client, manager, client):
    assert "/analytics/builder/" not in agent_client.get("/analytics/").content.decode()
    report = SavedReport.objects.create(owner=manager, name="Shared", spec={"measure": "leads"}, shared=True)
    assert agent_client.get(URL).status_code == 403
    assert agent_client.get(f"{URL}?report={report.pk}").status_code == 403
    assert agent_client.post("/analytics/builder/save", {"name": "x", "spec": "{}"}).status_code == 403
    assert agent_client.post(f"/analytics/builder/{report.pk}", {"action": "delete"}).status_code == 403
    client.logout()
    assert client.get(URL).status_code == 302
    assert SavedReport.objects.count() == 1


def test_the_builder_page_reads_a_constant_number_of_queries(manager_client, manager, inbox_team,
                                                             django_assert_max_num_queries):
    params = {"measure": "replies", "dimension": ["agent", "channel"], "preset": "custom", **JUNE}
    manager_client.get(URL, params)  # warm up: the first request of a client reads a little more
    # The user; the total and the cells; the agents' names; the agent filter's options; the saved reports.
    with django_assert_max_num_queries(6):
        assert manager_client.get(URL, params).status_code == 200
    assert table_text(manager_client.get(URL, params)) == [["Agent \\ Channel", "Email", "SMS"], ["Ann", "0", "3"],
                                                           ["Bob", "1", "0"]]
    for n in range(5):
        SavedReport.objects.create(owner=manager, name=f"r{n}", spec={"measure": "leads"}, shared=True)
        make_user(f"agent{n}", role="Agent")
    with django_assert_max_num_queries(6):
        assert manager_client.get(URL, params).status_code == 200
