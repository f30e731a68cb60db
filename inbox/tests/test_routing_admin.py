"""Managers edit routing rules through choices; the stored JSON is checked as before."""
import pytest

from inbox.models import RoutingRule


def rule_form(**overrides):
    data = {"name": "After-hours SMS", "order": "10", "active": "on", "trigger": "conversation_created",
            "when_keywords": "", "when_keywords_match": "any", "when_hours": "", "when_booking": "",
            "then_assign": "", "then_status": "", "then_tags": ""}
    data.update(overrides)
    return data


def test_rule_form_offers_choices_not_json(manager_client, agent):
    page = manager_client.get("/admin/inbox/routingrule/add/").content.decode()
    assert 'name="conditions"' not in page and 'name="actions"' not in page
    for value in ("email", "sms", "chat", "call"):
        assert f'name="when_channels" value="{value}"' in page
    for tier in ("none", "silver", "gold", "platinum"):
        assert f'name="when_tiers" value="{tier}"' in page
    assert '<option value="user:alice">Alice</option>' in page  # people by name
    assert 'value="group:Agent"' in page and 'value="outside"' in page


def test_rule_saved_from_choices_stores_the_same_json_and_reopens_with_them(manager_client, agent):
    response = manager_client.post("/admin/inbox/routingrule/add/", rule_form(
        when_channels=["sms", "chat"], when_keywords="price, Quote ,price\nwedding party", when_keywords_match="all",
        when_tiers=["gold"], when_hours="outside", when_booking="no",
        then_assign="user:alice", then_status="pending", then_tags="after-hours, sms"))
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = RoutingRule.objects.get()
    assert rule.conditions == {"channel": ["sms", "chat"],
                               "keywords": {"words": ["price", "Quote", "wedding party"], "match": "all"},
                               "loyalty_tier": ["gold"], "business_hours": "outside", "has_upcoming_booking": False}
    assert rule.actions == {"assign_user": "alice", "set_status": "pending", "add_tags": ["after-hours", "sms"]}
    page = manager_client.get(f"/admin/inbox/routingrule/{rule.pk}/change/").content.decode()
    assert 'value="sms" checked' in page.replace(' id="id_when_channels_1"', "") or \
        'name="when_channels" value="sms" id="id_when_channels_1" checked' in page
    assert '<option value="user:alice" selected>Alice</option>' in page
    assert "price, Quote, wedding party" in page
    changelist = manager_client.get("/admin/inbox/routingrule/").content.decode()
    assert "SMS or Chat" in changelist and "assign alice" in changelist


@pytest.mark.parametrize("overrides, message", [
    ({}, "Choose at least one thing to do"),
    ({"then_tags": "no spaces allowed!"}, "&#x27;add_tags&#x27; must be a non-empty list of tag names"),
    ({"then_assign": "user:mallory"}, "Select a valid choice"),
    ({"when_channels": ["fax"], "then_status": "pending"}, "Select a valid choice"),
])
def test_bad_rules_are_refused_with_the_reason_and_nothing_saved(manager_client, agent, overrides, message):
    response = manager_client.post("/admin/inbox/routingrule/add/", rule_form(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not RoutingRule.objects.exists()


def test_assignee_who_left_is_refused_by_the_same_validation(manager_client, agent):
    """The form's choices are read when it is built; the JSON check runs at save."""
    from inbox.admin_forms import RoutingRuleForm

    form = RoutingRuleForm(data=rule_form(then_assign="user:alice"))
    agent.is_active = False
    agent.save()
    assert not form.is_valid()
    assert "'assign_user': no active user named 'alice'." in form.errors["__all__"]
