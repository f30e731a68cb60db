"""Tables of the website chat (registered under the channels_ingest app, see ../models.py)."""
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ChatbotSession(models.Model):
    """One conversation of the website's AI chatbot, as its integration posted it
    (POST /api/v1/chatbot/sessions): the transcript and the figures analytics reads."""

    session_id = models.CharField(max_length=100, unique=True, help_text="The chatbot's own id (idempotency key).")
    customer = models.ForeignKey("crm.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="chatbot_sessions", help_text="Empty: the visitor left no contact.")
    conversation = models.ForeignKey("inbox.Conversation", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    message = models.ForeignKey("inbox.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="The transcript's item in the customer's thread.")
    model = models.CharField(max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0, help_text="In USD.")
    rating = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The visitor's rating, 1-5.")
    handed_off = models.BooleanField(default=False)
    transcript = models.JSONField(default=list)
    contact = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(rating__isnull=True) | Q(rating__gte=1, rating__lte=5),
                                   name="chatbot_session_rating_1_to_5"),
            models.CheckConstraint(condition=Q(cost__gte=0), name="chatbot_session_cost_not_negative"),
        ]
        indexes = [models.Index(fields=["handed_off", "created_at"], name="chatbot_session_handoff_idx")]

    def __str__(self):
        return f"chatbot session {self.session_id}"
