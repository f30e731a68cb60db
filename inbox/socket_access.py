"""Ending a person's live sockets (/ws/inbox) when their access ends.

A socket is authorised once, when it opens. So that it does not go on
receiving events after its person logged out, left the staff groups, was
deactivated or deleted, these signal receivers (connected in apps.py) send a
close message to the person's own channel-layer group (events.user_group),
which each of their sockets joined; the consumer closes on it. A log-out
closes only the sockets of that log-in session. Changes to users and groups
take effect when their transaction commits.

Whatever these miss (a group deleted outright, a lost Redis message), the
staff fan-out's periodic check (consumers.REJOIN_SECONDS) catches: it asks
the database who of its sockets' users is still staff and closes the others.
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from myhibachi.roles import staff_user_ids

from . import events

logger = logging.getLogger(__name__)

CLOSE = "inbox.close"
# WebSocket close codes (4000-4999 are the application's).
LOGGED_OUT = 4401
NOT_STAFF = 4403


def close_sockets(user_ids, *, code, session_key=None) -> None:
    """Tell every socket of these users (of this session only, if given) to close. Never raises."""
    layer = get_channel_layer()
    if layer is None or not user_ids:
        return
    message = {"type": CLOSE, "code": code, "session": session_key}

    async def send_all():
        for user_id in user_ids:
            await layer.group_send(events.user_group(user_id), message)

    try:
        async_to_sync(send_all)()
    except Exception:
        # The periodic check in consumers.StaffFanout closes them within REJOIN_SECONDS.
        logger.exception("could not tell the sockets of users %s to close", list(user_ids))


def close_sockets_of_non_staff(user_ids) -> None:
    """After the transaction commits: close the sockets of those of these users who are no longer staff."""
    user_ids = set(user_ids)

    def check():
        close_sockets(sorted(user_ids - staff_user_ids(user_ids)), code=NOT_STAFF)

    if user_ids:
        transaction.on_commit(check)


def on_logged_out(sender, request, user, **kwargs):
    if user is not None and getattr(request, "session", None) is not None:
        close_sockets([user.pk], code=LOGGED_OUT, session_key=request.session.session_key)


def on_groups_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if action == "pre_clear" and reverse:
        # Group.user_set.clear(): post_clear does not say who was in the group.
        instance._myhibachi_clearing = set(instance.user_set.values_list("pk", flat=True))
    elif action in ("post_remove", "post_clear"):
        if not reverse:
            close_sockets_of_non_staff([instance.pk])
        elif action == "post_remove":
            close_sockets_of_non_staff(pk_set or ())
        else:
            close_sockets_of_non_staff(getattr(instance, "_myhibachi_clearing", ()))


def on_user_saved(sender, instance, created, update_fields=None, **kwargs):
    if created or (update_fields is not None and not {"is_active", "is_superuser"} & set(update_fields)):
        return  # e.g. last_login at every log-in: nothing about access changed
    close_sockets_of_non_staff([instance.pk])


def on_user_deleted(sender, instance, **kwargs):
    user_id = instance.pk
    transaction.on_commit(lambda: close_sockets([user_id], code=NOT_STAFF))


def connect():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import m2m_changed, post_delete, post_save

    User = get_user_model()
    user_logged_out.connect(on_logged_out, dispatch_uid="inbox.sockets.logged_out")
    m2m_changed.connect(on_groups_changed, sender=User.groups.through, dispatch_uid="inbox.sockets.groups")
    post_save.connect(on_user_saved, sender=User, dispatch_uid="inbox.sockets.user_saved")
    post_delete.connect(on_user_deleted, sender=User, dispatch_uid="inbox.sockets.user_deleted")
