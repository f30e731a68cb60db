"""Managers' admin for the email channel: mailboxes, rejected emails, the
do-not-email list, campaigns (compose, send, figures) and tracking records; and for
SMS and calls the agents' RingCentral numbers, the sync state, the webhook subscription and the
notifications it has queued."""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage

from myhibachi.admin_site import BusinessAdmin
from myhibachi.roles import is_manager

from .email import campaigns, passwords
from .models import (
    AgentPhone, Campaign, CampaignRecipient, ChatbotSession, Mailbox, PendingNotification, RejectedEmail, SentEmail,
    Subscription, Suppression, SyncState, TrackingEvent,
)


class ManagerOnly:
    """Managers (and superusers) only, whatever Django permissions say."""

    def has_module_permission(self, request):
        return is_manager(request.user)

    def has_view_permission(self, request, obj=None):
        return is_manager(request.user)

    def has_add_permission(self, request, *args):
        return is_manager(request.user)

    def has_change_permission(self, request, obj=None):
        return is_manager(request.user)

    def has_delete_permission(self, request, obj=None):
        return is_manager(request.user)


class ReadOnly(ManagerOnly):
    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class MailboxForm(forms.ModelForm):
    password = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the stored one. Not needed with a password environment variable.",
    )

    class Meta:
        model = Mailbox
        fields = ["name", "host", "port", "tls", "username", "password_env", "password", "folder",
                  "processed_folder", "active"]

    def clean(self):
        data = super().clean()
        has_stored = bool(self.instance.password_encrypted)
        if not data.get("password_env") and not data.get("password") and not has_stored:
            raise ValidationError("Give a password environment variable, or type the password to store it encrypted.")
        return data

    def save(self, commit=True):
        if self.cleaned_data.get("password"):
            self.instance.password_encrypted = passwords.encrypt(self.cleaned_data["password"])
        return super().save(commit)


@admin.register(Mailbox)
class MailboxAdmin(ManagerOnly, BusinessAdmin):
    form = MailboxForm
    list_display = ("name", "username", "host", "folder", "active", "last_uid", "last_polled_at", "last_error")
    list_filter = ("active",)
    search_fields = ("name", "username", "host")
    readonly_fields = ("uidvalidity", "last_uid", "last_polled_at", "last_poll_stats", "last_error")
    actions = ["poll_now"]

    @admin.action(description="Poll the selected mailboxes now")
    def poll_now(self, request, queryset):
        from .email.imap import poll

        for mailbox in queryset:
            stats = poll(mailbox)
            level = messages.ERROR if stats.error else messages.SUCCESS
            text = stats.error or (f"{mailbox.name}: fetched {stats.fetched}, stored {stats.stored}, "
                                   f"duplicates {stats.duplicates}, rejected {stats.rejected}")
            if stats.locked:
                text, level = f"{mailbox.name} is being polled by a worker right now; try again shortly.", messages.WARNING
            self.message_user(request, text, level)


@admin.register(RejectedEmail)
class RejectedEmailAdmin(ManagerOnly, BusinessAdmin):
    list_display = ("created_at", "source", "mailbox", "message_id", "reason", "size", "resolved")
    list_filter = ("resolved", "source", "mailbox")
    search_fields = ("message_id", "reason")
    readonly_fields = ("source", "mailbox", "uid", "message_id", "reason", "raw_path", "size", "created_at")
    actions = ["retry"]

    def has_add_permission(self, request, *args):
        return False

    @admin.action(description="Try to store the selected emails again")
    def retry(self, request, queryset):
        from .email.ingest import REJECTED, store_email

        done = 0
        for rejected in queryset.filter(resolved=False):
            with default_storage.open(rejected.raw_path, "rb") as handle:
                result = store_email(handle.read(), source=f"{rejected.source}-retry", mailbox=rejected.mailbox)
            if result.status != REJECTED:
                rejected.resolved = True
                rejected.save(update_fields=["resolved"])
                done += 1
        self.message_user(request, f"{done} of {queryset.count()} email(s) are now in the inbox.")


@admin.register(Suppression)
class SuppressionAdmin(ManagerOnly, BusinessAdmin):
    list_display = ("email", "reason", "detail", "created_at")
    list_filter = ("reason",)
    search_fields = ("email",)


@admin.register(Campaign)
class CampaignAdmin(ManagerOnly, BusinessAdmin):
    list_display = ("name", "status", "segment", "recipients_count", "sent_count", "delivered_count", "opened_count",
                    "clicked_count", "bounced_count", "unsubscribed_count", "created_at")
    list_filter = ("status", "segment")
    search_fields = ("name", "subject")
    readonly_fields = ("status", "status_detail", "created_by", "started_at", "finished_at", "recipients_count",
                       "suppressed_count", "sent_count", "failed_count", "delivered_count", "opened_count",
                       "clicked_count", "bounced_count", "unsubscribed_count", "complained_count")
    fieldsets = (
        (None, {"fields": ("name", "subject", "body")}),
        ("Who gets it", {"fields": ("segment", "loyalty_tier", "months_without_booking")}),
        ("Figures", {"fields": readonly_fields}),
    )
    actions = ["send_campaign"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def has_change_permission(self, request, obj=None):
        # A campaign is edited while it is a draft; after that it is a record.
        return is_manager(request.user) and (obj is None or obj.status == Campaign.Status.DRAFT)

    @admin.action(description="Send the selected draft campaigns")
    def send_campaign(self, request, queryset):
        for campaign in queryset:
            try:
                queued = campaigns.queue(campaign, by=request.user)
            except ValidationError as exc:
                self.message_user(request, f"{campaign}: {'; '.join(exc.messages)}", messages.ERROR)
                continue
            if queued:
                self.message_user(request, f"{campaign} is being sent; the figures fill in as it goes.")
            else:
                self.message_user(request, f"{campaign} was already sent or queued.", messages.WARNING)


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(ReadOnly, BusinessAdmin):
    list_display = ("email", "campaign", "status", "sent_at", "delivered_at", "opened_at", "clicked_at", "bounced_at",
                    "unsubscribed_at")
    list_filter = ("status", "campaign")
    search_fields = ("email",)
    list_select_related = ("campaign",)


@admin.register(SentEmail)
class SentEmailAdmin(ReadOnly, BusinessAdmin):
    list_display = ("created_at", "kind", "to", "status", "esp_message_id")
    list_filter = ("kind", "status")
    search_fields = ("to", "esp_message_id", "message_id_header")


@admin.register(TrackingEvent)
class TrackingEventAdmin(ReadOnly, BusinessAdmin):
    list_display = ("created_at", "event_type", "recipient", "esp_message_id")
    list_filter = ("event_type",)
    search_fields = ("recipient", "esp_message_id", "event_id")


# --- SMS and calls (RingCentral) ---------------------------------------------------------

@admin.register(AgentPhone)
class AgentPhoneAdmin(ManagerOnly, BusinessAdmin):
    """Each agent's own RingCentral number: click to call rings it first."""

    list_display = ("user", "phone_number")
    search_fields = ("user__username", "phone_number")


@admin.register(SyncState)
class SyncStateAdmin(ManagerOnly, BusinessAdmin):
    list_display = ("feed", "last_run_at", "cursor_at", "last_error", "locked_until")
    readonly_fields = ("feed", "sync_token", "cursor_at", "last_run_at", "last_error", "locked_until", "lock_owner")

    def has_add_permission(self, request, *args):
        return False


@admin.register(PendingNotification)
class PendingNotificationAdmin(ReadOnly, BusinessAdmin):
    """SMS notifications acknowledged and not stored yet: normally none for more than a moment; one
    with attempts has failed to store on its own (its error is kept; the message-sync brings its SMS)."""

    list_display = ("id", "received_at", "attempts", "last_error")
    list_filter = ("attempts",)
    readonly_fields = ("body", "received_at", "attempts", "last_error")


@admin.register(Subscription)
class SubscriptionAdmin(ManagerOnly, BusinessAdmin):
    list_display = ("subscription_id", "status", "address", "expires_at", "renewed_at")
    readonly_fields = ("subscription_id", "status", "address", "event_filters", "expires_at", "created_at",
                       "renewed_at")

    def has_add_permission(self, request, *args):
        return False
@admin.register(ChatbotSession)
class ChatbotSessionAdmin(ReadOnly, BusinessAdmin):
    """What the website chatbot posted (POST /api/v1/chatbot/sessions); written by the API only."""

    list_display = ("session_id", "customer", "handed_off", "rating", "model", "prompt_tokens", "completion_tokens",
                    "cost", "created_at")
    list_filter = ("handed_off", "rating", "model")
    search_fields = ("session_id", "customer__first_name", "customer__last_name")
    list_select_related = ("customer",)
    date_hierarchy = "created_at"
