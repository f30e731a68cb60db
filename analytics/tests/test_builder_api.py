"""/api/v1/analytics/reports: save, list, run (JSON and CSV), change and delete saved report specs;
managers only, each manager's reports their own unless shared, and clear 4xx for anything else."""
import csv
import io

import pytest

from analytics import builder
from analytics.models import SavedReport
from analytics.tests.helpers import booking, local
from analytics.tests.test_builder import Q1, la, shop  # noqa: F401 (fixtures)
from tests.factories import make_customer, make_user

pytestmark = pytest.mark.django_db
REPORTS = "/api/v1/analytics/reports"
BY_SOURCE = {"measure": "booked_revenue", "dimensions": ["source"], "range": Q1}


def rows_of(response):
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def other_manager(client):
    return make_user("olivia", role="Manager", first_name="Olivia")


def saved(owner, name="By source", spec=None, shared=False):
    return SavedReport.objects.create(owner=owner, name=name, spec=spec or BY_SOURCE, shared=shared)


def test_a_manager_saves_a_report_and_runs_it_as_json_and_csv(manager_client, manager, shop):
    created = manager_client.post(REPORTS, {"name": " By source ", "spec": BY_SOURCE}, content_type="application/json")
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "By source" and body["owner"] == {"id": manager.pk, "name": "Morgan"}
    assert body["spec"] == {**BY_SOURCE, "filters": {}} and body["shared"] is False and body["problem"] is None
    assert [r["name"] for r in manager_client.get(REPORTS).json()] == ["By source"]

    run = manager_client.get(f"{REPORTS}/{body['id']}/run")
    assert run.status_code == 200
    assert run.json()["rows"] == [{"source": "website", "booked_revenue": 3000.0},
                                  {"source": "yelp", "booked_revenue": 2000.0}]
    assert run.json()["total"] == 5000.0 and run.json()["time_zone"] == "America/Los_Angeles"
    as_csv = manager_client.get(f"{REPORTS}/{body['id']}/run?format=csv")
    assert as_csv["Content-Type"].startswith("text/csv")
    assert rows_of(as_csv) == [["source", "booked_revenue"], ["website", "3000.00"], ["yelp", "2000.00"]]


def test_csv_cells_people_typed_cannot_run_as_formulas(manager_client, manager):
    booking(make_customer(), status="completed", confirmed_at=local(2026, 2, 1, 12), event_at=local(2026, 2, 2, 12),
            total=100, location="=HYPERLINK(\"http://evil\")")
    report = saved(manager, spec={"measure": "event_revenue", "dimensions": ["location"], "range": Q1})
    assert rows_of(manager_client.get(f"{REPORTS}/{report.pk}/run?format=csv"))[1] == [
        "'=HYPERLINK(\"http://evil\")", "100.00"]


@pytest.mark.parametrize("spec, message", [
    ({"measure": "profit"}, "Unknown measure 'profit'"),
    ({"measure": "replies", "dimensions": ["agent", "channel", "month"]}, "At most 2 dimensions, got 3."),
    ({"measure": "booked_revenue", "filters": {"customer_id": ["1"]}}, "Booked revenue cannot be filtered by"),
    ({"measure": "booked_revenue", "filters": {"source": ["source; DROP TABLE crm_booking"]}},
     "'source; DROP TABLE crm_booking' is not a source"),
    ("SELECT * FROM crm_booking", "A report spec is a JSON object"),
])
def test_a_bad_spec_is_a_400_that_says_what_is_wrong(manager_client, spec, message):
    response = manager_client.post(REPORTS, {"name": "x", "spec": spec}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"]["spec"][0].startswith(message)
    assert not SavedReport.objects.exists()


def test_names_are_needed_and_unique_per_manager(manager_client, manager, other_manager):
    saved(manager, "Mine")
    saved(other_manager, "Theirs")
    for name, message in (("  ", "Give the report a name"), ("Mine", "You already have a report called “Mine”")):
        response = manager_client.post(REPORTS, {"name": name, "spec": BY_SOURCE}, content_type="application/json")
        assert response.status_code == 400 and response.json()["errors"]["name"][0].startswith(message)
    assert manager_client.post(REPORTS, {"name": "Theirs", "spec": BY_SOURCE},
                               content_type="application/json").status_code == 201


def test_injection_in_a_location_filter_matches_nothing(manager_client, manager, shop):
    report = saved(manager, spec={**BY_SOURCE, "filters": {"location": ["x' OR '1'='1"]}})
    run = manager_client.get(f"{REPORTS}/{report.pk}/run").json()
    assert run["rows"] == [] and run["total"] == 0


def test_agents_and_strangers_are_refused_everywhere(client, agent_client, manager):
    report = saved(manager, shared=True)
    calls = [("get", REPORTS), ("post", REPORTS), ("get", f"{REPORTS}/{report.pk}"), ("put", f"{REPORTS}/{report.pk}"),
             ("delete", f"{REPORTS}/{report.pk}"), ("get", f"{REPORTS}/{report.pk}/run")]
    for method, url in calls:
        assert getattr(agent_client, method)(url, {}, content_type="application/json").status_code == 403, url
    client.logout()
    for method, url in calls:
        assert getattr(client, method)(url, {}, content_type="application/json").status_code in (401, 403), url
    assert SavedReport.objects.get().name == "By source"


def test_another_manager_cannot_see_a_private_report_and_cannot_change_a_shared_one(client, manager, other_manager,
                                                                                    shop):
    private, shared = saved(manager, "Private"), saved(manager, "Shared", shared=True)
    client.force_login(other_manager)
    assert [r["name"] for r in client.get(REPORTS).json()] == ["Shared"]
    for url in (f"{REPORTS}/{private.pk}", f"{REPORTS}/{private.pk}/run"):
        assert client.get(url).status_code == 404
    assert client.put(f"{REPORTS}/{private.pk}", {"name": "Mine now"}, content_type="application/json").status_code == 404
    assert client.get(f"{REPORTS}/{shared.pk}/run").json()["total"] == 5000.0
    assert client.get(f"{REPORTS}/{shared.pk}").json()["can_change"] is False
    put = client.put(f"{REPORTS}/{shared.pk}", {"name": "Mine now"}, content_type="application/json")
    assert put.status_code == 403 and "Only the report's owner" in put.json()["message"]
    assert client.delete(f"{REPORTS}/{shared.pk}").status_code == 403
    assert SavedReport.objects.filter(name__in=["Private", "Shared"]).count() == 2


def test_the_owner_changes_and_deletes_and_a_superuser_may_too(manager_client, manager, client):
    report = saved(manager)
    changed = manager_client.put(f"{REPORTS}/{report.pk}", {"shared": True, "spec": {**BY_SOURCE, "dimensions": []}},
                                 content_type="application/json")
    assert changed.status_code == 200
    assert changed.json()["shared"] is True and changed.json()["spec"]["dimensions"] == []
    assert changed.json()["name"] == "By source"  # left out: unchanged
    bad = manager_client.put(f"{REPORTS}/{report.pk}", {"spec": {"measure": "booked_revenue", "dimensions": ["agent"]}},
                             content_type="application/json")
    assert bad.status_code == 400 and "cannot be split by 'agent'" in bad.json()["errors"]["spec"][0]
    root = make_user("root", role=None, is_superuser=True)
    client.force_login(root)
    assert client.put(f"{REPORTS}/{report.pk}", {"name": "Renamed"}, content_type="application/json").status_code == 200
    assert client.delete(f"{REPORTS}/{report.pk}").status_code == 204
    assert not SavedReport.objects.exists()


def test_a_saved_spec_this_version_cannot_run_says_so(manager_client, manager):
    report = saved(manager, "Old", spec={"measure": "profit_margin", "dimensions": ["source"]})
    listed = manager_client.get(REPORTS).json()[0]
    assert listed["problem"].startswith("The report “Old” was saved with a spec this version cannot run: "
                                        "Unknown measure 'profit_margin'")
    run = manager_client.get(f"{REPORTS}/{report.pk}/run")
    assert run.status_code == 422 and run.json()["code"] == "stale_report"
    assert "Unknown measure 'profit_margin'" in run.json()["message"]


def test_a_report_over_the_cell_limit_is_a_400(manager_client, manager, shop, monkeypatch):
    monkeypatch.setattr(builder, "MAX_CELLS", 5)
    report = saved(manager, spec={**BY_SOURCE, "dimensions": ["source", "month"]})
    response = manager_client.get(f"{REPORTS}/{report.pk}/run")
    assert response.status_code == 400 and response.json()["code"] == "too_many_cells"
    assert response.json()["message"].startswith("This report has more than 5 cells")


@pytest.mark.parametrize("raw", ["abc", "0", str(2 ** 70), "1.5"])
def test_ids_that_are_not_ids_are_404(manager_client, raw):
    assert manager_client.get(f"{REPORTS}/{raw}").status_code == 404
    assert manager_client.get(f"{REPORTS}/{raw}/run").status_code == 404


def test_the_endpoints_are_in_the_openapi_schema(manager_client):
    paths = manager_client.get("/api/v1/schema/?format=json").json()["paths"]
    assert {"get", "post"} <= paths["/api/v1/analytics/reports"].keys()
    assert {"get", "put", "delete"} <= paths["/api/v1/analytics/reports/{id}"].keys()
    assert "csv" in str(paths["/api/v1/analytics/reports/{id}/run"]["get"]["parameters"])


def test_a_retried_post_with_the_same_idempotency_key_saves_once(manager_client):
    body = {"name": "Once", "spec": BY_SOURCE}
    first = manager_client.post(REPORTS, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = manager_client.post(REPORTS, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, again.status_code) == (201, 201) and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and SavedReport.objects.count() == 1


def test_list_and_run_read_a_constant_number_of_queries(manager_client, manager, other_manager, shop,
                                                        django_assert_max_num_queries):
    report = saved(manager)
    for n in range(6):
        saved(other_manager if n % 2 else manager, f"r{n}", shared=True)
    manager_client.get(REPORTS)  # warm up: the first request of a client reads a little more
    with django_assert_max_num_queries(2):  # the user with their groups; the reports with their owners
        assert len(manager_client.get(REPORTS).json()) == 7
    # The user; the report; the total; the cells.
    with django_assert_max_num_queries(4):
        assert manager_client.get(f"{REPORTS}/{report.pk}/run").status_code == 200
