"""Query parameters of GET /api/v1/inbox, validated by django-filter."""
import functools
from datetime import timezone as dt_timezone

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from inbox import assignees, channels, selectors
from inbox.models import Conversation
from myhibachi.ids import BadId, parse_id


class IdField(forms.Field):
    """A row id: ASCII digits, 1 to 2**63-1 (myhibachi.ids.parse_id)."""

    default_error_messages = {"invalid": "Use an id: a whole number from 1, digits 0-9 only."}

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_id(value)
        except BadId:
            raise ValidationError(self.error_messages["invalid"], code="invalid")


@extend_schema_field(OpenApiTypes.INT64)
class IdFilter(django_filters.Filter):
    field_class = IdField


class UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 date-time that also exists in UTC (the database's zone):
    0001-01-01T00:00:00+05:00 parses, but is before year 1 there."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is not None:
            try:
                value.astimezone(dt_timezone.utc)
            except OverflowError:
                raise ValidationError("That date and time is out of range.", code="invalid")
        return value


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class ConversationFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=[*Conversation.Status.choices, ("all", "All")], method="filter_noop",
        help_text="open, pending, resolved, closed or all (default: all).")
    channel = django_filters.ChoiceFilter(choices=channels.choices(), method="filter_noop",
                                          help_text="Conversations with at least one message on this channel.")
    assignee = django_filters.CharFilter(method="filter_noop", strip=False,  # "1 " is no id (myhibachi.ids)
                                         help_text='A user id, "me" or "unassigned".')
    customer = IdFilter(method="filter_noop", help_text="A customer id.")
    tag = django_filters.CharFilter(method="filter_noop", max_length=50)
    created_after = DateTimeFilter(method="filter_noop")
    created_before = DateTimeFilter(method="filter_noop")
    last_activity_after = DateTimeFilter(method="filter_noop")
    last_activity_before = DateTimeFilter(method="filter_noop")
    q = django_filters.CharFilter(method="filter_noop", max_length=200,
                                  help_text='Full-text search: words, "a phrase", prefix*; or an email/phone.')

    class Meta:
        model = Conversation
        fields = []

    @classmethod
    @functools.cache
    def _form_class(cls):
        return type(f"{cls.__name__}Form", (cls._meta.form,),
                    {name: filter_.field for name, filter_ in cls.base_filters.items()})

    def get_form_class(self):
        # django-filter builds a new form class (and every field) per request;
        # these fields never depend on the request, so one class serves all.
        return self._form_class()

    def filter_noop(self, queryset, name, value):
        return queryset  # applied together in filter_queryset, through the selector

    def filter_queryset(self, queryset):
        return self.apply(self.form.cleaned_data, queryset, user=self.request.user)

    def is_valid(self):
        return self.is_bound and self.valid_form(self.form)

    # The list view validates and filters through these class methods, without
    # a FilterSet instance: django-filter deep-copies every filter for each
    # instance (~220 copies per request here) only to bind them to it, and
    # this filterset never uses bound filters. The class stays what the
    # OpenAPI schema documents.

    @classmethod
    def form_for(cls, params):
        return cls._form_class()(params)

    @classmethod
    def valid_form(cls, form) -> bool:
        if not form.is_valid():
            return False
        raw = form.cleaned_data.get("assignee")
        if raw:
            try:
                assignees.filter_value(raw)
            except ValidationError as exc:
                form.add_error("assignee", exc)
                return False
        return True

    @staticmethod
    def apply(data, queryset, *, user):
        assignee = assignees.filter_value(data["assignee"]) if data.get("assignee") else None  # checked in valid_form
        return selectors.filter_conversations(
            queryset, user=user, status=data.get("status"), channel=data.get("channel"),
            assignee=assignee, customer=data.get("customer"), tag=data.get("tag"),
            created_after=data.get("created_after"), created_before=data.get("created_before"),
            active_after=data.get("last_activity_after"), active_before=data.get("last_activity_before"),
        )
