"""Saved reports in the admin follow the builder's rules: own + shared, the owner changes, the spec is checked."""
import pytest

from analytics.models import SavedReport
from tests.factories import make_user

pytestmark = pytest.mark.django_db
ADMIN = "/admin/analytics/savedreport/"
SPEC = '{"measure": "leads", "dimensions": ["source"]}'


def test_a_manager_lists_own_and_shared_and_changes_only_their_own(manager_client, manager):
    olivia = make_user("olivia", role="Manager")
    mine = SavedReport.objects.create(owner=manager, name="Mine", spec={"measure": "leads"})
    shared = SavedReport.objects.create(owner=olivia, name="Shared", spec={"measure": "leads"}, shared=True)
    SavedReport.objects.create(owner=olivia, name="Private", spec={"measure": "leads"})
    listing = manager_client.get(ADMIN).content.decode()
    assert "Mine" in listing and "Shared" in listing and "Private" not in listing
    refused = manager_client.post(f"{ADMIN}{shared.pk}/change/", {"name": "Taken", "spec": SPEC})
    assert refused.status_code == 403
    assert manager_client.post(f"{ADMIN}{shared.pk}/delete/", {"post": "yes"}).status_code == 403
    assert manager_client.post(f"{ADMIN}{mine.pk}/change/", {"name": "Mine", "spec": SPEC}).status_code == 302
    mine.refresh_from_db()
    assert mine.spec == {"measure": "leads", "dimensions": ["source"], "filters": {},
                         "range": {"preset": "last_12_months"}}
    assert SavedReport.objects.get(pk=shared.pk).name == "Shared"


def test_adding_checks_the_spec_and_the_name_and_sets_the_owner(manager_client, manager):
    SavedReport.objects.create(owner=manager, name="Leads", spec={"measure": "leads"})
    bad = manager_client.post(f"{ADMIN}add/", {"name": "New", "spec": '{"measure": "leads; DROP TABLE x"}'})
    assert bad.status_code == 200 and "Unknown measure" in bad.content.decode()
    taken = manager_client.post(f"{ADMIN}add/", {"name": "Leads", "spec": SPEC})
    assert taken.status_code == 200 and "You already have a report called" in taken.content.decode()
    assert manager_client.post(f"{ADMIN}add/", {"name": "By source", "spec": SPEC}).status_code == 302
    assert SavedReport.objects.get(name="By source").owner == manager
