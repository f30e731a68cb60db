"""Managers handle staff accounts in the admin without being able to take any over."""
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core import mail
from rest_framework.authtoken.models import Token

from tests.factories import make_user

User = get_user_model()


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")


@pytest.fixture
def root_client(client, root):
    client.force_login(root)
    return client


def change_form(user, **overrides):
    names = set(user.groups.values_list("name", flat=True))
    data = {"username": user.username, "first_name": user.first_name, "last_name": user.last_name,
            "email": user.email, "is_active": "on", "role": "Manager" if "Manager" in names else "Agent",
            "last_login_0": "", "last_login_1": "", "date_joined_0": "2026-01-01", "date_joined_1": "10:00:00"}
    data.update(overrides)
    return data


def test_manager_cannot_grant_superuser_staff_or_permissions_even_with_forged_fields(manager_client, agent,
                                                                                       manager):
    permission = Permission.objects.get(codename="delete_user")
    for target in (agent, manager):  # someone else, and themselves
        url = f"/admin/auth/user/{target.pk}/change/"
        page = manager_client.get(url).content.decode()
        assert 'name="is_superuser"' not in page and 'name="user_permissions"' not in page
        assert 'name="is_staff"' not in page
        response = manager_client.post(url, change_form(target, first_name="Renamed", is_superuser="on",
                                                        is_staff="on", user_permissions=[permission.pk]))
        assert response.status_code == 302
        target.refresh_from_db()
        assert target.first_name == "Renamed"  # the form itself worked
        assert not target.is_superuser and not target.is_staff
        assert not target.user_permissions.exists()
        assert not target.has_perm("auth.delete_user")


def test_manager_gives_a_role_agent_or_manager_and_nothing_else(manager_client, agent):
    ops = Group.objects.create(name="Ops")
    ops.permissions.add(Permission.objects.get(codename="delete_user"))
    page = manager_client.get(f"/admin/auth/user/{agent.pk}/change/").content.decode()
    assert ">Ops<" not in page and 'name="groups"' not in page
    assert 'name="role" value="Agent"' in page and 'name="role" value="Manager"' in page
    for forged in ({"role": "Ops"}, {"role": "", "groups": [ops.pk]}):
        response = manager_client.post(f"/admin/auth/user/{agent.pk}/change/", change_form(agent, **forged))
        assert response.status_code == 200
        assert "Select a valid choice" in response.content.decode() or "This field is required" in response.content.decode()
    assert list(agent.groups.values_list("name", flat=True)) == ["Agent"]
    response = manager_client.post(f"/admin/auth/user/{agent.pk}/change/", change_form(agent, role="Manager"))
    assert response.status_code == 302
    assert list(agent.groups.values_list("name", flat=True)) == ["Manager"]


def test_a_group_given_by_a_superuser_stays_when_a_manager_saves(manager_client, agent):
    ops = Group.objects.create(name="Ops")
    agent.groups.add(ops)
    form = change_form(agent, role="Agent")
    assert manager_client.post(f"/admin/auth/user/{agent.pk}/change/", form).status_code == 302
    assert set(agent.groups.values_list("name", flat=True)) == {"Agent", "Ops"}


def test_manager_cannot_open_change_or_delete_a_superuser(manager_client, root):
    assert manager_client.get(f"/admin/auth/user/{root.pk}/change/").status_code == 403
    response = manager_client.post(f"/admin/auth/user/{root.pk}/change/", change_form(root, is_active=""))
    assert response.status_code == 403
    assert manager_client.post(f"/admin/auth/user/{root.pk}/delete/", {"post": "yes"}).status_code == 403
    assert manager_client.get(f"/admin/auth/user/{root.pk}/password/").status_code == 403
    root.refresh_from_db()
    assert root.is_active and root.check_password("pw-for-tests-1")


def test_manager_cannot_set_another_users_password(manager_client, agent, manager):
    url = f"/admin/auth/user/{agent.pk}/password/"
    assert manager_client.get(url).status_code == 403
    response = manager_client.post(url, {"password1": "Taken-0ver-now!", "password2": "Taken-0ver-now!",
                                         "usable_password": "true"})
    assert response.status_code == 403
    agent.refresh_from_db()
    assert agent.check_password("pw-for-tests-1")
    # Their own: through the page that asks for the old password.
    response = manager_client.get(f"/admin/auth/user/{manager.pk}/password/")
    assert response.status_code == 302 and response["Location"] == "/admin/password_change/"
    assert manager_client.get("/admin/password_change/").status_code == 200


def test_manager_cannot_redirect_another_users_reset_emails(manager_client, agent):
    agent.email = "alice@example.com"
    agent.save()
    response = manager_client.post(f"/admin/auth/user/{agent.pk}/change/",
                                   change_form(agent, email="attacker@evil.example"))
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.email == "alice@example.com"


def reset_link(message):
    return re.search(r"https?://[^/\s]+(/password-reset/\S+/)", message.body).group(1)


def test_manager_sends_a_password_reset_email_that_lets_the_user_choose_a_password(manager_client, agent, client):
    agent.email = "alice@example.com"
    agent.save()
    response = manager_client.post("/admin/auth/user/", {"action": "send_password_reset_email",
                                                         "_selected_action": [agent.pk]}, follow=True)
    assert "Password-reset email sent to alice" in response.content.decode()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.com"]
    assert "Morgan" in message.body and "alice" in message.body
    manager_client.logout()

    response = client.get(reset_link(message), follow=True)  # Django swaps the token for a session value
    assert "Choose a password" in response.content.decode()
    response = client.post(response.redirect_chain[-1][0], {"new_password1": "Sunny-teppanyaki-42",
                                                            "new_password2": "Sunny-teppanyaki-42"})
    assert response.status_code == 302 and response["Location"] == "/password-reset/done/"
    assert "Your password is set" in client.get("/password-reset/done/").content.decode()
    assert client.post("/login/", {"username": "alice", "password": "Sunny-teppanyaki-42"}).status_code == 302
    assert client.get(reset_link(message), follow=True).content.decode().count("no longer works") == 1


def test_reset_email_is_not_sent_for_a_superuser(manager_client, root):
    response = manager_client.post("/admin/auth/user/", {"action": "send_password_reset_email",
                                                         "_selected_action": [root.pk]}, follow=True)
    assert response.status_code == 200  # a manager's list has no superusers to select
    assert mail.outbox == []


def test_a_user_added_by_a_manager_has_no_password_and_is_emailed_a_link(manager_client,
                                                                       django_capture_on_commit_callbacks):
    ops = Group.objects.create(name="Ops")
    with django_capture_on_commit_callbacks(execute=True):
        response = manager_client.post("/admin/auth/user/add/", {
            "first_name": "New", "last_name": "Person", "email": "Newbie@Example.com", "role": "Agent",
            # forged: none of these are on the manager's form
            "username": "root2", "groups": [ops.pk],
            "is_superuser": "on", "is_staff": "on", "password1": "Chosen-by-manager-1",
            "password2": "Chosen-by-manager-1", "usable_password": "true"})
    assert response.status_code == 302
    user = User.objects.get(email="newbie@example.com")
    assert user.username == "newbie@example.com" and user.get_full_name() == "New Person"
    assert not user.has_usable_password()
    assert not user.is_superuser and not user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == ["Agent"]
    assert [m.to for m in mail.outbox] == [["newbie@example.com"]]
    assert "/password-reset/" in mail.outbox[0].body


def test_a_superuser_keeps_the_full_user_admin(root_client, agent):
    page = root_client.get(f"/admin/auth/user/{agent.pk}/change/").content.decode()
    assert 'name="is_superuser"' in page and 'name="user_permissions"' in page
    response = root_client.post(f"/admin/auth/user/{agent.pk}/change/",
                                change_form(agent, is_superuser="on", is_staff="on"))
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.is_superuser and agent.is_staff
    response = root_client.post(f"/admin/auth/user/{agent.pk}/password/", {
        "password1": "Root-chose-this-1", "password2": "Root-chose-this-1", "usable_password": "true"})
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.check_password("Root-chose-this-1")


# --- API tokens -------------------------------------------------------------------------

def test_manager_lists_creates_and_deletes_api_tokens(manager_client, agent):
    assert manager_client.get("/admin/authtoken/tokenproxy/").status_code == 200
    assert manager_client.get("/admin/authtoken/tokenproxy/add/").status_code == 200
    response = manager_client.post("/admin/authtoken/tokenproxy/add/", {"user": agent.pk})
    assert response.status_code == 302
    token = Token.objects.get(user=agent)
    assert token.key in manager_client.get("/admin/authtoken/tokenproxy/").content.decode()
    response = manager_client.post(f"/admin/authtoken/tokenproxy/{agent.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Token.objects.filter(user=agent).exists()


def test_manager_cannot_mint_or_see_a_superusers_token(manager_client, root):
    Token.objects.create(user=root)
    assert root.username not in manager_client.get("/admin/authtoken/tokenproxy/").content.decode()
    Token.objects.filter(user=root).delete()
    response = manager_client.post("/admin/authtoken/tokenproxy/add/", {"user": root.pk})
    assert response.status_code == 200  # the form refuses the choice
    assert not Token.objects.filter(user=root).exists()


def test_migrate_gives_existing_manager_groups_the_token_permissions(db):
    from django.core.management.sql import emit_post_migrate_signal

    managers = Group.objects.get(name="Manager")
    managers.permissions.remove(*managers.permissions.filter(content_type__model="tokenproxy"))
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    codenames = set(managers.permissions.filter(content_type__model="tokenproxy").values_list("codename", flat=True))
    assert codenames == {"view_tokenproxy", "add_tokenproxy", "delete_tokenproxy"}
    assert make_user("mo", role="Manager").has_perm("authtoken.view_tokenproxy")


# --- Add agent, the user list, what managers see -------------------------------------

def test_add_agent_asks_name_email_and_role_and_invites_by_email(manager_client, client,
                                                                  django_capture_on_commit_callbacks):
    page = manager_client.get("/admin/auth/user/").content.decode()
    assert ">Add agent</a>" in page
    page = manager_client.get("/admin/auth/user/add/").content.decode()
    assert "<h1>Add agent</h1>" in page
    for name in ("first_name", "last_name", "email", "role"):
        assert f'name="{name}"' in page
    for absent in ("username", "password1", "is_staff", "groups", "user_permissions"):
        assert f'name="{absent}"' not in page
    with django_capture_on_commit_callbacks(execute=True):
        response = manager_client.post("/admin/auth/user/add/", {
            "first_name": "Dana", "last_name": "Lee", "email": "dana@example.com", "role": "Manager"}, follow=True)
    assert response.status_code == 200
    assert [m.to for m in mail.outbox] == [["dana@example.com"]]
    dana = User.objects.get(email="dana@example.com")
    assert list(dana.groups.values_list("name", flat=True)) == ["Manager"]
    manager_client.logout()
    link = reset_link(mail.outbox[0])
    response = client.get(link, follow=True)
    client.post(response.redirect_chain[-1][0], {"new_password1": "Grill-master-77", "new_password2": "Grill-master-77"})
    assert client.post("/login/", {"username": "dana@example.com", "password": "Grill-master-77"}).status_code == 302


def test_add_agent_refuses_an_email_someone_already_has(manager_client, agent):
    agent.email = "alice@example.com"
    agent.save()
    response = manager_client.post("/admin/auth/user/add/", {
        "first_name": "Al", "email": "ALICE@example.com", "role": "Agent"})
    assert response.status_code == 200
    assert "Someone already has this email address." in response.content.decode()
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1


def test_user_list_shows_people_by_name_with_their_role(manager_client, agent, manager, root):
    agent.last_name = "Kim"
    agent.save()
    page = manager_client.get("/admin/auth/user/").content.decode()
    assert "Alice Kim" in page and ">Agent<" in page and ">Manager<" in page
    assert "Staff status" not in page and "Superuser status" not in page
    assert "root@example.com" not in page  # superusers are not a manager's to see


def test_groups_and_internal_records_are_hidden_from_managers(manager_client, root):
    from django.test import Client

    root_client = Client()
    root_client.force_login(root)
    index = manager_client.get("/admin/").content.decode()
    for hidden in ("/admin/auth/group/", "/admin/inbox/inboxevent/", "/admin/inbox/idempotencykey/"):
        assert hidden not in index
        assert manager_client.get(hidden).status_code == 403
    assert "/admin/inbox/conversation/" in index
    root_index = root_client.get("/admin/").content.decode()
    assert "/admin/inbox/inboxevent/" in root_index and "/admin/auth/group/" in root_index


def test_admin_is_titled_for_the_business(manager_client, settings):
    page = manager_client.get("/admin/").content.decode()
    assert "Django administration" not in page and "Django site admin" not in page
    assert "My Hibachi admin" in page
