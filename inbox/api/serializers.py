"""API shapes. Rows read what the selectors already loaded; no serializer queries."""
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from crm.models import Customer
from inbox import assignees, channels
from inbox.models import CannedResponse, Conversation, InboxEvent, Message, Note, RoutingRule
from inbox.routing import validate_rule
from inbox.sanitize import clean_html

from .encoders import channel_names_of, primary_identity, tag_names_of
from myhibachi.ids import BadId, parse_id


class UserBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.SerializerMethodField()

    def get_name(self, user) -> str:
        return user.get_full_name() or user.get_username()


class CustomerBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    identity = serializers.SerializerMethodField(help_text="Primary email or phone.")

    def get_identity(self, customer) -> str | None:
        return primary_identity(customer)


class LastMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    channel = serializers.CharField()
    direction = serializers.CharField()
    preview = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_preview(self, message) -> str:
        return " ".join((message.text or message.subject).split())[:140]


class ConversationRowSerializer(serializers.ModelSerializer):
    customer = CustomerBriefSerializer()
    assignee = UserBriefSerializer(allow_null=True)
    last_message = LastMessageSerializer(allow_null=True)
    tags = serializers.SerializerMethodField()
    channels = serializers.SerializerMethodField(
        help_text="Every channel the conversation has a message on (what the channel filter matches).")

    class Meta:
        model = Conversation
        fields = ["id", "status", "subject", "customer", "assignee", "last_message", "last_activity_at",
                  "is_unread", "tags", "channels", "created_at", "first_response_at", "resolved_at"]

    def get_tags(self, conversation) -> list[str]:
        return tag_names_of(conversation)

    def get_channels(self, conversation) -> list[str]:
        return channel_names_of(conversation)


class IdentitySerializer(serializers.Serializer):
    kind = serializers.CharField()
    value = serializers.CharField()
    is_primary = serializers.BooleanField()


class BookingBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_at = serializers.DateTimeField()
    guest_count = serializers.IntegerField()
    status = serializers.CharField()


class ProfileSerializer(serializers.Serializer):
    previous_bookings = serializers.IntegerField(help_text="Completed bookings.")
    bookings_total = serializers.IntegerField()
    loyalty_tier = serializers.CharField()
    preferred_channel = serializers.CharField()
    next_booking = BookingBriefSerializer(allow_null=True)


class CleanHtmlField(serializers.CharField):
    """Stored html, cleaned again on the way out with the rules it was stored under."""

    def to_representation(self, value):
        return clean_html(value)


class RetrySerializer(serializers.Serializer):
    attempt = serializers.IntegerField(required=False, min_value=0, max_value=99_999, help_text=(
        "How many retries you saw (the reply's metadata.retries); a retry that already happened is not repeated."))


class MessageSerializer(serializers.ModelSerializer):
    author = UserBriefSerializer(allow_null=True)
    html = CleanHtmlField(read_only=True, help_text="Sanitised HTML (email only).")

    class Meta:
        model = Message
        fields = ["id", "conversation", "channel", "direction", "subject", "text", "html", "metadata",
                  "delivery_status", "status_reason", "author", "created_at"]


class NoteSerializer(serializers.ModelSerializer):
    author = UserBriefSerializer(allow_null=True)

    class Meta:
        model = Note
        fields = ["id", "conversation", "body", "author", "created_at"]


class ThreadItemSerializer(serializers.Serializer):
    """The documented shape of one thread item (OpenAPI schema).

    Responses are built by encoders.thread_item_data() from the selector's plain
    rows; a test holds its output to MessageSerializer / NoteSerializer's.
    """

    kind = serializers.ChoiceField(choices=["message", "note"])
    internal = serializers.BooleanField(help_text="Notes are internal: never sent to the customer.")
    item = serializers.DictField()


class IdRelatedField(serializers.PrimaryKeyRelatedField):
    """A related row by id; the id is parsed strictly (myhibachi.ids) before the database sees it."""

    default_error_messages = {"invalid_id": "Use an id: a whole number from 1, digits 0-9 only."}

    def to_internal_value(self, data):
        try:
            parse_id(data)
        except BadId:
            self.fail("invalid_id")
        return super().to_internal_value(data)


class ReplySerializer(serializers.Serializer):
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, default="")
    channel = serializers.ChoiceField(choices=channels.reply_choices(), required=False,
                                      help_text="A channel staff can answer on (default: the customer's last).")
    canned_response = IdRelatedField(queryset=CannedResponse.objects.filter(active=True), required=False)
    seen_through = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**63 - 1,
        help_text="Id of the newest message of the customer's thread you had seen when you started writing. "
                  "If newer ones arrived (from the customer or other staff), the reply is not sent: "
                  "409 `stale_reply` with them in `new_items`. Leave out to send without this check.")
    send_anyway = serializers.BooleanField(
        required=False, default=False, help_text="Send even if there are newer messages than `seen_through`.")
    cc = serializers.ListField(child=serializers.EmailField(), required=False, max_length=10,
                               help_text="Email replies only: addresses copied (at most 10).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["channel"].choices = channels.reply_choices()  # the registry as it is now


class StatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Conversation.Status.choices)


class AssignSerializer(serializers.Serializer):
    assignee = serializers.CharField(allow_null=True, trim_whitespace=False,  # "1 " is no id (myhibachi.ids)
                                     help_text='A user id, "me", or null for nobody.')

    def validate_assignee(self, value):
        try:
            return assignees.assignee_for(value, user=self.context["request"].user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages)


class TagSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="The tag; stored slugified, at most 40 characters.")


class NoteCreateSerializer(serializers.Serializer):
    body = serializers.CharField(trim_whitespace=True)


class CannedResponseSerializer(serializers.ModelSerializer):
    class Meta:
        model = CannedResponse
        fields = ["id", "title", "shortcut", "body", "active", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_body(self, body):
        from django.core.exceptions import ValidationError

        from inbox.canned import validate_body

        try:
            validate_body(body)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages)
        return body


class RoutingRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = RoutingRule
        fields = ["id", "name", "order", "active", "trigger", "conditions", "actions", "continue_processing",
                  "created_at"]
        read_only_fields = ["created_at"]

    def validate(self, attrs):
        from django.core.exceptions import ValidationError

        conditions = attrs.get("conditions", getattr(self.instance, "conditions", {}))
        actions = attrs.get("actions", getattr(self.instance, "actions", {}))
        try:
            validate_rule(conditions, actions)
        except ValidationError as exc:
            raise serializers.ValidationError({"rule": exc.messages})
        return attrs


class CustomerSerializer(serializers.ModelSerializer):
    identities = IdentitySerializer(many=True)
    name = serializers.CharField()

    class Meta:
        model = Customer
        fields = ["id", "name", "first_name", "last_name", "preferred_channel", "identities", "created_at"]


class EventSerializer(serializers.ModelSerializer):
    """The same shape as the frames on /ws/inbox (inbox.events.as_message), so
    a client applies caught-up events exactly like live ones."""

    at = serializers.DateTimeField(source="created_at")
    data = serializers.JSONField(source="payload")

    class Meta:
        model = InboxEvent
        fields = ["id", "type", "conversation", "at", "data"]
