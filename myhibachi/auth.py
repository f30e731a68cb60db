"""The login backend: Django's ModelBackend, reading the user's staff groups
in the same query that loads the user on every request; and the API's token
authentication, which does the same for the token's user.

Every screen and API call asks roles.is_staff_member(); answered from
user.groups that was a second query per request. The answer is read fresh
on each request, so removing someone from the Agent group takes effect at
their next click, exactly as before. The statement is written out: built
through the ORM (annotate + Exists) it cost more CPU than the two queries it
replaces (bench/bench_inbox.py).

It is also where passwords are checked, so the limit on log-in attempts is
kept here, once for every log-in page (myhibachi/login_limit.py).
"""
import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from . import login_limit, roles


@functools.cache
def _user_sql(by: str = "id") -> str:
    """The user with their two staff-group flags, found by id (a session) or by API token key."""
    User = get_user_model()
    membership = User.groups.through._meta

    def name(value):
        return connection.ops.quote_name(value)

    in_group = (f"EXISTS (SELECT 1 FROM {name(membership.db_table)} AS m "
                f"JOIN {name(Group._meta.db_table)} AS g ON g.id = m.{name(membership.get_field('group').column)} "
                f"WHERE m.{name(membership.get_field('user').column)} = u.{name(User._meta.pk.column)} "
                f"AND g.name = %s)")
    # Columns named, not u.*: a statement prepared on a pooled connection must
    # keep its result shape when a later migration adds a column to the table.
    columns = ", ".join(f"u.{name(field.column)}" for field in User._meta.concrete_fields)
    select = (f"SELECT {columns}, {in_group} AS myhibachi_agent, {in_group} AS myhibachi_manager "
              f"FROM {name(User._meta.db_table)} AS u ")
    if by == "token":
        token = Token._meta
        return (select + f"JOIN {name(token.db_table)} AS t ON t.{name(token.get_field('user').column)} = "
                f"u.{name(User._meta.pk.column)} WHERE t.{name(token.get_field('key').column)} = %s")
    return select + f"WHERE u.{name(User._meta.pk.column)} = %s"


def _staff_user(by: str, value):
    """The user (None if there is none) with roles already knowing their staff groups."""
    found = list(get_user_model()._default_manager.raw(_user_sql(by), [roles.AGENT, roles.MANAGER, value]))
    if not found:
        return None
    user = found[0]
    roles.remember_staff_groups(user, agent=user.myhibachi_agent, manager=user.myhibachi_manager)
    return user


class StaffTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, reading the token's user and their staff groups in one query
    (DRF's own reads the token and user, then IsStaffMember asked for the groups: two per API call)."""

    def authenticate_credentials(self, key):
        user = _staff_user("token", key)
        if user is None:
            raise AuthenticationFailed(_("Invalid token."))
        if not user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        return user, Token(key=key, user=user)


class StaffBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        attempt = login_limit.begin(request, username)
        if isinstance(attempt, login_limit.Lockout):
            if request is not None:
                login_limit.mark_locked_out(request, attempt)
            # Stops django.contrib.auth.authenticate() before any password check;
            # it then sends user_login_failed as for a wrong password.
            raise PermissionDenied(attempt.message)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            attempt.succeeded()
        return user

    def get_user(self, user_id):
        # user_id comes from the session, already converted by django.contrib.auth.get_user.
        user = _staff_user("id", user_id)
        return user if user is not None and self.user_can_authenticate(user) else None
