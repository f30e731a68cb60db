"""The login backend: Django's ModelBackend, reading the user's staff groups
in the same query that loads the user on every request; and the API's token
authentication, which does the same for the token's user.

Every screen and API call asks roles.is_staff_member(); answered from
user.groups that was a second query per request. The answer is read fresh
on each request, so removing someone from the Agent group takes effect at
their next click, exactly as before. The statement is written out: built
through the ORM (annotate + Exists) it cost more CPU than the two queries it
replaces (bench/bench_inbox.py).

An API token's user is also kept in the cache for TOKEN_SECONDS, under a
generation (myhibachi/generations.py) that every save or delete of a user, a
token or a group, and every change of someone's groups, replaces: an
integration polling the API then costs no database query to authenticate,
and a revoked token, a deactivated user or a removed group membership still
takes effect at the next request. Only what the database answered for that
exact token is kept (keyed by a hash of it, never the token itself; wrong
tokens are not kept), without the password hash.

It is also where passwords are checked, so the limit on log-in attempts is
kept here, once for every log-in page (myhibachi/login_limit.py).
"""
import functools
import hashlib

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from . import login_limit, roles
from .generations import Generation

# A token's user is served from the cache at most this long after the database said so: the bound
# for a change made without signals (a raw UPDATE of the user or token tables).
TOKEN_SECONDS = 10
TOKEN_GENERATION = Generation("auth:token-generation")
TOKEN_FORMAT = 1  # in the keys: a node of another release never reads this one's entries


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


def _token_cache_key(key: str) -> str:
    return f"auth:token:{TOKEN_FORMAT}:{hashlib.blake2b(key.encode(), digest_size=20).hexdigest()}"


@functools.cache
def _kept_fields() -> tuple:
    """The user's columns a kept token user holds (all but the password hash); fixed once apps load."""
    return tuple(f.attname for f in get_user_model()._meta.concrete_fields if f.attname != "password")


def _token_user(key: str):
    """_staff_user("token", key), from the cache while no user, token or group changed since."""
    cache_key = _token_cache_key(key)
    found = cache.get_many([TOKEN_GENERATION.key, cache_key])
    generation = TOKEN_GENERATION.current(found)
    kept = Generation.valid(found.get(cache_key), generation)
    fields = _kept_fields()
    # An entry of another shape (a release whose user model has other fields) is not read.
    if kept is not None and kept["fields"].keys() == set(fields):
        # The password stays deferred: reading it loads it, and save() writes only the loaded fields.
        user = get_user_model().from_db("default", fields, [kept["fields"][name] for name in fields])
        roles.remember_staff_groups(user, agent=kept["agent"], manager=kept["manager"])
        return user
    user = _staff_user("token", key)
    if user is not None:
        cache.set(cache_key, Generation.entry(generation, {
            "fields": {name: getattr(user, name) for name in fields},
            "agent": user.myhibachi_agent, "manager": user.myhibachi_manager}), timeout=TOKEN_SECONDS)
    return user


def _access_changed(sender, **kwargs):
    TOKEN_GENERATION.changed()


def _groups_changed(sender, action, **kwargs):
    if action in ("post_add", "post_remove", "post_clear"):
        TOKEN_GENERATION.changed()


def connect() -> None:
    """Every write that can change what a token proves drops the kept token users (apps.py)."""
    from django.db.models.signals import m2m_changed, post_delete, post_save

    User = get_user_model()
    for model in (User, Token, Group):
        uid = f"myhibachi.auth.tokens.{model._meta.label_lower}"
        post_save.connect(_access_changed, sender=model, dispatch_uid=uid + ".save")
        post_delete.connect(_access_changed, sender=model, dispatch_uid=uid + ".delete")
    m2m_changed.connect(_groups_changed, sender=User.groups.through, dispatch_uid="myhibachi.auth.tokens.groups")


class StaffTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, reading the token's user and their staff groups in one query
    (DRF's own reads the token and user, then IsStaffMember asked for the groups: two per API call),
    or from the cache while nothing it depends on changed."""

    def authenticate_credentials(self, key):
        user = _token_user(key)
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
