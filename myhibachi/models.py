"""Tables of the staff platform itself (not of one app).

StaffProfile: what a staff member sets for themselves, beside Django's User:
their email signature (added to every email reply they send). Other per-person
settings (e.g. a RingCentral number of their own) belong here too.
"""
from django.conf import settings
from django.db import models

MAX_SIGNATURE_CHARS = 1000


class StaffProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_profile")
    signature = models.TextField(blank=True, max_length=MAX_SIGNATURE_CHARS,
                                 help_text="Added below every email reply this person sends.")

    def __str__(self):
        return f"Profile of {self.user}"


def signature_of(user) -> str:
    """The user's email signature, or "" (no profile yet: nothing set)."""
    if user is None or not getattr(user, "pk", None):
        return ""
    return (StaffProfile.objects.filter(user_id=user.pk).values_list("signature", flat=True).first() or "").strip()
