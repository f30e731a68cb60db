"""The login backend: Django's ModelBackend, reading the user's staff groups
in the same query that loads the user on every request.

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

from . import login_limit, roles


@functools.cache
def _user_sql() -> str:
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
    return (f"SELECT {columns}, {in_group} AS myhibachi_agent, {in_group} AS myhibachi_manager "
            f"FROM {name(User._meta.db_table)} AS u WHERE u.{name(User._meta.pk.column)} = %s")


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
        found = list(get_user_model()._default_manager.raw(_user_sql(), [roles.AGENT, roles.MANAGER, user_id]))
        if not found or not self.user_can_authenticate(found[0]):
            return None
        user = found[0]
        roles.remember_staff_groups(user, agent=user.myhibachi_agent, manager=user.myhibachi_manager)
        return user
