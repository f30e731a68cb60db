"""The login backend: Django's ModelBackend, reading the user's staff groups
in the same query that loads the user on every request.

Every screen and API call asks roles.is_staff_member(); answered from
user.groups that was a second query per request. The answer is read fresh
on each request, so removing someone from the Agent group takes effect at
their next click, exactly as before.
"""
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db.models import Exists, OuterRef

from . import roles


class StaffBackend(ModelBackend):
    def get_user(self, user_id):
        User = get_user_model()
        membership = User.groups.through.objects.filter(user_id=OuterRef("pk"))
        try:
            user = User._default_manager.annotate(
                myhibachi_agent=Exists(membership.filter(group__name=roles.AGENT)),
                myhibachi_manager=Exists(membership.filter(group__name=roles.MANAGER)),
            ).get(pk=user_id)
        except User.DoesNotExist:
            return None
        if not self.user_can_authenticate(user):
            return None
        roles.remember_staff_groups(user, agent=user.myhibachi_agent, manager=user.myhibachi_manager)
        return user
