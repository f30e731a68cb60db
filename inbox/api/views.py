"""API v1 views: validate, call a service or selector, serialize."""
import json

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, Q
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, NotFound, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from crm import identity
from crm.merge import MergeRefused, merge_customers
from crm.models import Customer, CustomerIdentity
from inbox import channels, list_cache, selectors, services
from inbox.access import access_conversation, access_reply
from inbox.models import CannedResponse, RoutingRule
from myhibachi.ids import BadId, parse_id
from myhibachi.roles import IsManager, IsManagerOrReadOnly, IsStaffMember

from . import encoders
from . import serializers as s
from .filters import ConversationFilter
from .idempotency import idempotent

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100


class Pagination(LimitOffsetPagination):
    """limit/offset as DRF documents them (a limit above the maximum is capped),
    except that a value that is not a plain whole number is a 400, not ignored."""

    default_limit = PAGE_SIZE
    max_limit = MAX_PAGE_SIZE

    def get_limit(self, request):
        raw = request.query_params.get(self.limit_query_param, "")
        if not raw:
            return self.default_limit
        try:
            return min(parse_id(raw), self.max_limit)
        except BadId:
            raise ValidationError({self.limit_query_param: [f"Use a whole number from 1 to {self.max_limit}."]})

    def get_offset(self, request):
        raw = request.query_params.get(self.offset_query_param, "")
        if not raw:
            return 0
        try:
            return parse_id(raw, minimum=0)
        except BadId:
            raise ValidationError({self.offset_query_param: ["Use a whole number from 0 (digits 0-9 only)."]})


class IdLookupMixin:
    """/<resource>/<id> where the id is not a plain id answers 404, before the
    database sees it (2**70 overflows its integer column; "١٢" would read as 12)."""

    def get_object(self):
        raw = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
        try:
            parse_id(raw)
        except BadId:
            raise NotFound(f"There is no {self.queryset.model._meta.verbose_name} {raw}.")
        return super().get_object()


class InboxAPIView(APIView):
    permission_classes = [IsStaffMember]


def _page_size(request):
    raw = request.query_params.get("page_size", "")
    if not raw:
        return PAGE_SIZE
    try:
        return parse_id(raw, maximum=MAX_PAGE_SIZE)
    except BadId:
        raise ValidationError({"page_size": [f"Use a whole number from 1 to {MAX_PAGE_SIZE}."]})


@extend_schema(
    parameters=[OpenApiParameter("cursor", str, description="The `next` cursor of the previous page."),
                OpenApiParameter("page_size", int, description=f"Rows per page, 1–{MAX_PAGE_SIZE} (default 25).")],
    responses=inline_serializer("InboxPage", {
        "results": s.ConversationRowSerializer(many=True),
        "next": serializers.CharField(allow_null=True, help_text="Cursor for the next page."),
        "counts": serializers.DictField(child=serializers.IntegerField(),
                                        help_text="Conversations per status, plus all."),
        "latest_event": serializers.IntegerField(help_text="Sequence number of the newest live event."),
    }),
)
class InboxListView(InboxAPIView, ListAPIView):
    """Conversations, newest activity first (or best match first with `q`)."""

    filterset_class = ConversationFilter
    serializer_class = s.ConversationRowSerializer

    def get_queryset(self):
        return selectors.conversations_for_list()

    def list(self, request, *args, **kwargs):
        # A page read since the last change is served from the cache (inbox/list_cache.py); only
        # pages of valid parameters are stored, so a stored page needs no second validation.
        key = list_cache.page_key(request.user.pk, request.query_params)
        page, generation, found = list_cache.lookup(key, selectors.STATUS_COUNTS_KEY)
        if page is None:
            form = self.filterset_class.form_for(request.query_params)
            if not self.filterset_class.valid_form(form):
                raise ValidationError(form.errors)
            # Kept as the JSON the renderer writes, so a kept page is not encoded again.
            page = JSONRenderer().render(self._read(request, form))
            list_cache.store(key, generation, page)
        counts = selectors.status_counts(found[selectors.STATUS_COUNTS_KEY])
        if isinstance(request.accepted_renderer, JSONRenderer):
            body = page[:-1] + b',"counts":' + JSONRenderer().render(counts) + b"}"
            return HttpResponse(body, content_type=request.accepted_renderer.media_type)
        return Response({**json.loads(page), "counts": counts})  # the browsable API

    def _read(self, request, form) -> dict:
        qs = self.filterset_class.apply(form.cleaned_data, self.get_queryset(), user=request.user)
        size, cursor = _page_size(request), request.query_params.get("cursor") or None
        latest_event = selectors.latest_event_id()  # before the rows: they hold at least what it names
        text = form.cleaned_data.get("q")
        page = (selectors.page_of_search(qs, text, size=size, cursor=cursor) if text
                else selectors.page_by_activity(qs, size=size, cursor=cursor))
        return {
            "results": [row.as_api() for row in page.rows],  # the serializer's shape, see inbox/rows.py
            "next": page.next_cursor,
            "latest_event": latest_event,
        }


class ConversationDetailView(InboxAPIView):
    @extend_schema(
        parameters=[OpenApiParameter("before", str, description="Cursor for older thread items."),
                    OpenApiParameter("page_size", int, description="Thread items per page (default 25).")],
        responses=inline_serializer("ConversationDetail", {
            "conversation": s.ConversationRowSerializer(),
            "customer": s.CustomerSerializer(),
            "profile": s.ProfileSerializer(),
            "thread": s.ThreadItemSerializer(many=True),
            "older": serializers.CharField(allow_null=True),
            "reply_options": inline_serializer("ReplyOptions", {
                "available": serializers.ListField(child=serializers.CharField()),
                "default": serializers.CharField(allow_null=True),
                "missing": inline_serializer("MissingChannel", {"channel": serializers.CharField(),
                                                                "reason": serializers.CharField()}, many=True),
            }),
        }),
    )
    def get(self, request, pk):
        """The conversation, the customer's profile and their whole thread across channels."""
        conversation = selectors.with_identities(access_conversation(request.user, pk), tags=True)
        items, older = selectors.customer_thread(conversation.customer_id, size=_page_size(request),
                                                 before=request.query_params.get("before") or None,
                                                 with_metadata=True)
        conversation.last_message = None  # the thread carries the messages
        row = s.ConversationRowSerializer(conversation).data
        return Response({
            "conversation": row,
            "customer": encoders.customer_data(conversation.customer),
            "profile": s.ProfileSerializer(selectors.customer_profile(conversation.customer, panel=False)).data,
            "thread": [encoders.thread_item_data(item) for item in items],
            "older": older,
            "reply_options": _reply_options(conversation, items if not request.query_params.get("before") else []),
        })


def _reply_options(conversation, newest_items) -> dict:
    """The channels a reply can go out on now (the composer's and services.reply's rule).
    newest_items: the thread's newest page, where the customer's last channel is read when it is there."""
    last = next((item.row["channel"] for item in reversed(newest_items)
                 if item.kind == "message" and item.row["direction"] == "inbound"), None)
    options = channels.reply_options(conversation.customer, last_inbound=last,
                                     identities=conversation.customer.identity_list)
    return {"available": options.names(), "default": options.default,
            "missing": [{"channel": spec.name, "reason": why} for spec, why in options.missing]}


class ReplyView(InboxAPIView):
    @extend_schema(request=s.ReplySerializer, responses={
        201: s.MessageSerializer,
        409: inline_serializer("StaleReply", {
            "message": serializers.CharField(), "code": serializers.CharField(help_text='"stale_reply"'),
            "new_items": s.MessageSerializer(many=True, help_text="Messages newer than seen_through, oldest first."),
            "seen_through": serializers.IntegerField(help_text="Send this back to say you have seen them."),
        }),
    })
    @idempotent
    def post(self, request, pk):
        """Queue a reply to the customer (email, SMS or chat). Accepts an Idempotency-Key header.

        With `seen_through`, a reply written before newer messages arrived answers 409
        `stale_reply` with those messages (`new_items`) and is not sent; the refusal does
        not use up the Idempotency-Key, so the same key may then carry `send_anyway`."""
        conversation = access_conversation(request.user, pk)
        data = _valid(s.ReplySerializer, request)
        try:
            message = services.reply(
                conversation=conversation, author=request.user, text=data["text"], channel=data.get("channel"),
                canned_response=data.get("canned_response"), cc=data.get("cc"),
                seen_through=None if data["send_anyway"] else data.get("seen_through"))
        except services.StaleReply as exc:
            exc.details = {"new_items": s.MessageSerializer(exc.new_messages, many=True).data,
                           "seen_through": exc.new_messages[-1].pk}
            raise  # an error: the idempotency record rolls back with it
        return Response(s.MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class RetryReplyView(InboxAPIView):
    @extend_schema(request=s.RetrySerializer, responses={200: s.MessageSerializer})
    @idempotent
    def post(self, request, pk, message_pk):
        """Send a failed reply again on its channel. Idempotent: a reply that is no longer
        failed is returned as it is, and `attempt` (the `metadata.retries` you saw) makes a
        repeated request for the same retry a no-op even after that retry failed too.
        422 when the channel cannot send now (the message says why)."""
        conversation = access_conversation(request.user, pk)
        message = access_reply(conversation, message_pk)
        data = _valid(s.RetrySerializer, request)
        message = services.retry_reply(message=message, by=request.user, attempt=data.get("attempt"))
        return Response(s.MessageSerializer(message).data)


class EmailInsteadView(InboxAPIView):
    @extend_schema(request=None, responses={201: s.MessageSerializer})
    @idempotent
    def post(self, request, pk, message_pk):
        """Send the text of a failed SMS or chat reply as an email reply; returns the email.
        Idempotent: asking again returns the same email. 409 when the reply has not failed
        or was an email already, 422 when the customer has no email address we may use."""
        conversation = access_conversation(request.user, pk)
        message = access_reply(conversation, message_pk)
        email = services.send_by_email_instead(message=message, by=request.user)
        return Response(s.MessageSerializer(email).data, status=status.HTTP_201_CREATED)


class StatusView(InboxAPIView):
    @extend_schema(request=s.StatusSerializer, responses={200: s.ConversationRowSerializer})
    def put(self, request, pk):
        """Change the status; 409 when the move is not allowed from the current status."""
        conversation = access_conversation(request.user, pk)
        data = _valid(s.StatusSerializer, request)
        conversation = services.set_status(conversation=conversation, status=data["status"], by=request.user)
        return Response(_row(conversation.pk))


class AssignView(InboxAPIView):
    @extend_schema(request=s.AssignSerializer, responses={200: s.ConversationRowSerializer})
    @idempotent
    def post(self, request, pk):
        """Assign to a staff member ("me", a user id) or to nobody (null)."""
        conversation = access_conversation(request.user, pk)
        data = _valid(s.AssignSerializer, request)
        services.assign(conversation=conversation, assignee=data["assignee"], by=request.user)
        return Response(_row(conversation.pk))


class NoteView(InboxAPIView):
    @extend_schema(request=s.NoteCreateSerializer, responses={201: s.NoteSerializer})
    @idempotent
    def post(self, request, pk):
        """Add an internal note; @username mentions notify that user."""
        conversation = access_conversation(request.user, pk)
        data = _valid(s.NoteCreateSerializer, request)
        note = services.add_note(conversation=conversation, author=request.user, body=data["body"])
        return Response(s.NoteSerializer(note).data, status=status.HTTP_201_CREATED)


class ReadView(InboxAPIView):
    @extend_schema(request=None, responses={200: s.ConversationRowSerializer})
    def post(self, request, pk):
        """Mark the conversation as read by staff."""
        conversation = access_conversation(request.user, pk)
        services.mark_read(conversation=conversation, by=request.user)
        return Response(_row(conversation.pk))


class EventsView(InboxAPIView):
    @extend_schema(
        parameters=[OpenApiParameter("after", int, required=True,
                                     description="Return events with a sequence number above this one.")],
        responses=inline_serializer("EventPage", {"events": s.EventSerializer(many=True),
                                                  "latest": serializers.IntegerField()}),
    )
    def get(self, request):
        """Live events missed since `after` (for reconnects and detected gaps)."""
        try:
            after = parse_id(request.query_params.get("after", ""), minimum=0)
        except BadId:
            raise ValidationError({"after": ["Give the last event number you saw (a whole number)."]})
        events = selectors.events_after(user=request.user, after=after)
        return Response({"events": s.EventSerializer(events, many=True).data,
                         "latest": events[-1].id if events else after})


class StaffNamesView(InboxAPIView):
    @extend_schema(
        parameters=[OpenApiParameter("q", str, description="Start of a username, first or last name (optional).")],
        responses=inline_serializer("StaffNames", {"results": inline_serializer("StaffName", {
            "id": serializers.IntegerField(), "username": serializers.CharField(), "name": serializers.CharField()},
            many=True)}),
    )
    def get(self, request):
        """Active staff members by name, at most 10: what "@" in a note suggests (staff only)."""
        prefix = request.query_params.get("q", "")[:50]
        return Response({"results": selectors.staff_names(prefix=prefix)})


class TagsView(InboxAPIView):
    @extend_schema(request=s.TagSerializer, responses={200: s.ConversationRowSerializer})
    @idempotent
    def post(self, request, pk):
        """Add a tag (created when new; a name is slugified: "Nut Allergy" is nut-allergy)."""
        conversation = access_conversation(request.user, pk)
        data = _valid(s.TagSerializer, request)
        services.add_tag(conversation=conversation, name=data["name"], by=request.user)
        return Response(_row(conversation.pk))


class TagView(InboxAPIView):
    @extend_schema(request=None, responses={200: s.ConversationRowSerializer})
    def delete(self, request, pk, name):
        """Remove a tag from the conversation (removing one it does not have changes nothing)."""
        conversation = access_conversation(request.user, pk)
        services.remove_tag(conversation=conversation, name=name, by=request.user)
        return Response(_row(conversation.pk))


def _valid(serializer_class, request):
    if not isinstance(request.data, dict):
        raise ValidationError({"non_field_errors": ["Send a JSON object."]})
    serializer = serializer_class(data=request.data, context={"request": request})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _row(pk):
    return selectors.list_row(pk).as_api()


class CannedResponseViewSet(IdLookupMixin, viewsets.ModelViewSet):
    """Canned responses: staff read them, managers write them."""

    queryset = CannedResponse.objects.all()
    serializer_class = s.CannedResponseSerializer
    permission_classes = [IsManagerOrReadOnly]
    pagination_class = Pagination
    filterset_fields = ["active", "shortcut"]

    @extend_schema(
        parameters=[OpenApiParameter("conversation", int, required=True)],
        responses=inline_serializer("RenderedCanned", {"text": serializers.CharField()}),
    )
    @action(detail=True, methods=["get"], permission_classes=[IsStaffMember])
    def render(self, request, pk=None):
        """The body with the conversation's customer, the current agent and the next booking filled in."""
        response = self.get_object()
        try:
            conversation_id = parse_id(request.query_params.get("conversation", ""))
        except BadId:
            raise ValidationError({"conversation": ["Give the id of the conversation to fill the variables from."]})
        conversation = access_conversation(request.user, conversation_id)
        text = services.render_canned(response, conversation=conversation, agent=request.user)
        return Response({"text": text})


class CustomerListView(ListAPIView):
    """Customers, searchable by name, email or phone (`q`)."""

    serializer_class = s.CustomerSerializer
    permission_classes = [IsStaffMember]
    pagination_class = Pagination

    @extend_schema(parameters=[OpenApiParameter("q", str, description="Name, email or phone.")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = Customer.objects.prefetch_related(
            Prefetch("identities", queryset=CustomerIdentity.objects.order_by("-is_primary", "kind", "id"))
        ).order_by("last_name", "first_name", "id")
        text = (self.request.query_params.get("q") or "").strip()[:200]
        if not text:
            return qs
        match = Q(first_name__icontains=text) | Q(last_name__icontains=text)
        if "@" in text:
            match |= Q(identities__kind="email", identities__value__startswith=text.lower())
        digits = "".join(ch for ch in text if ch.isdigit())
        if len(digits) >= 4:
            try:
                match |= Q(identities__kind="phone", identities__value=identity.normalize_phone(text))
            except DjangoValidationError:
                match |= Q(identities__kind="phone", identities__value__contains=digits)
        parts = text.split(None, 1)
        if len(parts) == 2:
            match |= Q(first_name__iexact=parts[0], last_name__icontains=parts[1])
        return qs.filter(match).distinct()


def _customer(raw, *, field=None):
    """The customer with this id (a plain id), else 404 naming it."""
    try:
        pk = parse_id(raw)
    except BadId:
        if field:
            raise ValidationError({field: ["Give the id of a customer (a whole number)."]})
        raise NotFound(f"There is no customer {raw}.")
    found = Customer.objects.filter(pk=pk).first()
    if found is None:
        raise NotFound(f"There is no customer {pk}.")
    return found


class CustomerMergeView(InboxAPIView):
    """Merge this customer into another (crm/merge.py): every conversation, message, identity,
    booking and lead moves to `into`, this customer is deleted, both threads' history says so."""

    @extend_schema(request=inline_serializer("CustomerMerge", {"into": serializers.IntegerField()}),
                   responses=s.CustomerSerializer)
    @idempotent
    def post(self, request, pk):
        source = _customer(pk)
        data = request.data if isinstance(request.data, dict) else {}
        if data.get("into") in (None, ""):
            raise ValidationError({"into": ["Give the id of the customer to merge into."]})
        into = _customer(data["into"], field="into")
        try:
            merged = merge_customers(source=source, into=into, by=request.user)
        except Customer.DoesNotExist as exc:
            raise NotFound(str(exc))
        except MergeRefused as exc:
            message = " ".join(exc.messages)
            return Response({"message": message, "code": exc.code or "refused", "errors": {"into": [message]}},
                            status=status.HTTP_400_BAD_REQUEST)
        merged = Customer.objects.prefetch_related(
            Prefetch("identities", queryset=CustomerIdentity.objects.order_by("-is_primary", "kind", "id"))
        ).get(pk=merged.pk)
        return Response(s.CustomerSerializer(merged).data)


class RoutingRuleViewSet(IdLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Routing rules, evaluated in order; managers only."""

    queryset = RoutingRule.objects.all()
    serializer_class = s.RoutingRuleSerializer
    permission_classes = [IsManager]
    pagination_class = Pagination
    http_method_names = ["get", "post", "patch", "head", "options"]


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema, for staff only: it maps every endpoint and field.
    Anonymous: 401 (with WWW-Authenticate: Token); logged in but not staff: 403."""

    permission_classes = [IsStaffMember]  # SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"] says the same


class DocsView(SpectacularSwaggerView):
    """Swagger UI over SchemaView, for staff only. A browser that is not logged
    in is sent to the log-in page (and back); logged in but not staff: 403."""

    permission_classes = [IsStaffMember]

    def handle_exception(self, exc):
        if isinstance(exc, (NotAuthenticated, AuthenticationFailed)):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)


class UnknownEndpointView(APIView):
    """Any other /api/v1/ address: a JSON 404 rather than an HTML page."""

    permission_classes = []
    authentication_classes = []
    schema = None

    def get(self, request, *args, **kwargs):
        raise NotFound(f"There is no API endpoint at {request.path}.")

    post = put = patch = delete = get
