from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model

from myhibachi.admin_site import BusinessAdmin, PersonChoiceField, PersonListFilter, export_as_csv, person_name

from .admin_forms import RoutingRuleForm, summary

from .models import CannedResponse, Conversation, IdempotencyKey, InboxEvent, Message, Note, RoutingRule, Tag


def _set_status_action(status):
    def action(modeladmin, request, queryset):
        from . import services

        changed, refused = 0, 0
        for conversation in queryset:
            try:
                services.set_status(conversation=conversation, status=status, by=request.user)
                changed += 1
            except services.InvalidTransition:
                refused += 1
        modeladmin.message_user(request, f"Set {changed} conversation(s) to {status}.", messages.SUCCESS)
        if refused:
            modeladmin.message_user(
                request, f"{refused} conversation(s) cannot move to {status} from their current status.", messages.WARNING
            )

    action.__name__ = f"mark_{status}"
    action.short_description = f"Set status: {status}"
    return action


class AssignForm(forms.Form):
    assignee = PersonChoiceField(queryset=get_user_model().objects.filter(is_active=True).order_by("first_name", "username"),
                                 required=False, empty_label="Nobody (unassigned)")


@admin.register(Conversation)
class ConversationAdmin(BusinessAdmin):
    list_display = ("id", "customer", "subject", "status", "assigned_to", "last_activity_at", "is_unread")
    list_filter = ("status", "is_unread", ("assignee", PersonListFilter), "tags", "last_activity_at")
    search_fields = ("subject", "customer__first_name", "customer__last_name", "customer__identities__value")
    date_hierarchy = "last_activity_at"
    list_select_related = ("customer", "assignee")
    autocomplete_fields = ("customer",)
    readonly_fields = ("first_response_at", "resolved_at", "created_at", "last_activity_at")
    actions = [_set_status_action(s) for s in Conversation.Status.values] + ["assign_selected", export_as_csv]

    @admin.display(description="Assignee", ordering="assignee__first_name")
    def assigned_to(self, obj):
        return person_name(obj.assignee) if obj.assignee_id else "—"

    @admin.action(description="Assign to a staff member…")
    def assign_selected(self, request, queryset):
        from django.template.response import TemplateResponse

        from . import services

        if "apply" in request.POST:
            form = AssignForm(request.POST)
            if form.is_valid():
                for conversation in queryset:
                    services.assign(conversation=conversation, assignee=form.cleaned_data["assignee"], by=request.user)
                self.message_user(request, f"Assigned {queryset.count()} conversation(s).", messages.SUCCESS)
                return None
        else:
            form = AssignForm()
        return TemplateResponse(
            request,
            "admin/inbox/assign.html",
            {**self.admin_site.each_context(request), "form": form, "queryset": queryset, "opts": self.model._meta},
        )


@admin.register(Message)
class MessageAdmin(BusinessAdmin):
    """Read-only: a message is the record of what a customer sent or what we
    sent them (and what the provider said about it). Its words, html, sender
    and times are not for anyone to rewrite, and a change form saving a whole
    row would also undo delivery updates that arrived meanwhile. Managers may
    view, search, export and delete."""

    list_display = ("id", "customer", "channel", "direction", "delivery_status", "created_at")
    list_filter = ("channel", "direction", "delivery_status", "created_at")
    search_fields = ("external_id", "subject", "customer__first_name", "customer__last_name")
    date_hierarchy = "created_at"
    list_select_related = ("customer",)
    raw_id_fields = ("conversation", "customer", "author")
    show_full_result_count = False
    actions = [export_as_csv]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Note)
class NoteAdmin(BusinessAdmin):
    list_display = ("id", "conversation", "written_by", "created_at")
    search_fields = ("body",)
    list_filter = ("created_at",)
    date_hierarchy = "created_at"
    list_select_related = ("author",)
    raw_id_fields = ("conversation", "customer")
    actions = [export_as_csv]

    @admin.display(description="Author", ordering="author__first_name")
    def written_by(self, obj):
        return person_name(obj.author)


@admin.register(CannedResponse)
class CannedResponseAdmin(BusinessAdmin):
    list_display = ("shortcut", "title", "active", "updated_at")
    list_filter = ("active",)
    search_fields = ("shortcut", "title", "body")
    actions = [export_as_csv]


@admin.register(RoutingRule)
class RoutingRuleAdmin(BusinessAdmin):
    """Rules are edited through choices (RoutingRuleForm), which build the same
    JSON that inbox.routing.validate_rule checks, in the model's clean()."""

    form = RoutingRuleForm
    fieldsets = RoutingRuleForm.fieldsets
    list_display = ("name", "order", "active", "continue_processing", "what_it_does")
    list_editable = ("order", "active")
    list_filter = ("active",)
    search_fields = ("name",)
    actions = [export_as_csv]

    @admin.display(description="What it does")
    def what_it_does(self, obj):
        return summary(obj)


@admin.register(Tag)
class TagAdmin(BusinessAdmin):
    search_fields = ("name",)


@admin.register(InboxEvent)
class InboxEventAdmin(BusinessAdmin):
    """Read-only, superusers only: the numbered live events, for tracing what browsers were told."""

    internal = True
    list_display = ("id", "type", "conversation", "recipient", "created_at")
    list_filter = ("type",)
    date_hierarchy = "created_at"
    raw_id_fields = ("conversation", "recipient")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(BusinessAdmin):
    """Read-only, superusers only: the stored first answers to API requests retried with a key."""

    internal = True
    list_display = ("key", "user", "method", "path", "status_code", "created_at")
    search_fields = ("key", "path")
    date_hierarchy = "created_at"
    raw_id_fields = ("user",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
