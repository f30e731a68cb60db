"""The website chatbot's hand-off: POST /api/v1/chatbot/sessions.

The chatbot's integration posts each finished session once it ends (or when
it hands the visitor over): transcript, model, token counts, cost, rating,
whether it handed off, and any contact details the visitor gave. Idempotent on
``session_id``: a repeat answers 200 with the stored session and stores and
changes nothing (the first post wins).

- Every session is kept as a ChatbotSession row (figures for analytics).
- With a contact (email, phone or the chat widget's visitor token) the
  transcript joins that customer's thread as one inbound chat item
  (metadata.kind "chatbot_transcript", shown folded). Contact details not yet
  known are added to that customer; ones belonging to another customer are not
  merged on the bot's word (they stay in the session's contact).
- A hand-off opens (or joins) the customer's active conversation, the routing
  rules see it (condition ``handed_off``), and a history row (bot_handoff)
  marks when the wait for a person began. A session that did not hand off
  never opens a conversation: it joins the latest one, or a closed one made
  to hold it.

Who may post: an API token (``Authorization: Token …``) of a user with the
permission channels_ingest.add_chatbotsession (an integration user made in the
admin; managers have it too). No session log-in: the endpoint is for machines.
"""
import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from crm import identity
from inbox import services as inbox_services
from myhibachi.auth import StaffTokenAuthentication

from . import services
from .models import ChatbotSession

MAX_LINES = 500
MAX_LINE_CHARS = 8000
ROLES = ("visitor", "bot", "agent", "system")
SESSION_ID = re.compile(r"\A[A-Za-z0-9_.:-]{1,100}\Z")  # RegexField searches: anchored


class CanPostChatbotSessions(BasePermission):
    message = "This token may not post chatbot sessions (needs channels_ingest.add_chatbotsession)."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_active
                    and user.has_perm("channels_ingest.add_chatbotsession"))


class LineSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLES)
    text = serializers.CharField(max_length=MAX_LINE_CHARS, allow_blank=True, trim_whitespace=False)
    at = serializers.DateTimeField(required=False)


class ContactSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    email = serializers.CharField(max_length=254, required=False, allow_blank=True)
    phone = serializers.CharField(max_length=64, required=False, allow_blank=True)
    visitor_token = serializers.RegexField(r"\A" + identity.VISITOR_TOKEN.pattern + r"\Z", required=False,
                                           allow_blank=True)

    def validate(self, data):
        try:
            services.contact_pairs(email=data.get("email", ""), phone=data.get("phone", ""))
        except DjangoValidationError as exc:  # keyed by field (email, phone)
            raise serializers.ValidationError(exc.message_dict)
        return data


class ChatbotSessionSerializer(serializers.Serializer):
    session_id = serializers.RegexField(SESSION_ID, error_messages={
        "invalid": "1 to 100 letters, digits, '_', '.', ':' or '-'."})
    transcript = LineSerializer(many=True, allow_empty=False, max_length=MAX_LINES)
    model = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    prompt_tokens = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    completion_tokens = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    cost = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=0, default=0)
    rating = serializers.IntegerField(min_value=1, max_value=5, required=False, allow_null=True, default=None)
    handed_off = serializers.BooleanField(default=False)
    contact = ContactSerializer(required=False, default=dict)
    started_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    ended_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


def transcript_text(lines) -> str:
    names = {"visitor": "Visitor", "bot": "Bot", "agent": "Agent", "system": "System"}
    return "\n".join(f"{names[line['role']]}: {' '.join(line['text'].split())}" for line in lines)


def record_session(data: dict) -> tuple[ChatbotSession, bool]:
    """Store a chatbot session (validated by ChatbotSessionSerializer); (session, created)."""
    existing = ChatbotSession.objects.filter(session_id=data["session_id"]).first()
    if existing is not None:
        return existing, False
    contact = {k: v for k, v in (data.get("contact") or {}).items() if v}
    lines = [{**line, "at": line["at"].isoformat()} if line.get("at") else dict(line) for line in data["transcript"]]
    try:
        with transaction.atomic():
            session = ChatbotSession.objects.create(
                session_id=data["session_id"], model=data["model"], prompt_tokens=data["prompt_tokens"],
                completion_tokens=data["completion_tokens"], cost=data["cost"], rating=data["rating"],
                handed_off=data["handed_off"], transcript=lines,
                contact={k: v for k, v in contact.items() if k != "visitor_token"},
                started_at=data["started_at"], ended_at=data["ended_at"])
            _into_thread(session, contact)
    except IntegrityError:
        # The same session posted twice at once: the other request stored it.
        found = ChatbotSession.objects.filter(session_id=data["session_id"]).first()
        if found is None:
            raise
        return found, False
    return session, True


def _into_thread(session: ChatbotSession, contact: dict) -> None:
    pairs = services.contact_pairs(email=contact.get("email", ""), phone=contact.get("phone", ""))
    if contact.get("visitor_token"):
        pairs.append((identity.VISITOR, services.digest_of(contact["visitor_token"])))
    if not pairs:
        return  # nobody to file it under: kept for analytics only
    (kind, value), others = pairs[0], pairs[1:]
    received = inbox_services.receive_message(
        channel=services.CHANNEL, sender=value, sender_kind=kind, text=transcript_text(session.transcript),
        sender_name=services.clean_name(contact.get("name", "")), external_id=f"chatbot:{session.session_id}",
        open_new=session.handed_off, received_at=session.ended_at or timezone.now(),
        metadata={"kind": "chatbot_transcript", "session": session.session_id, "model": session.model,
                  "rating": session.rating, "handed_off": session.handed_off})
    message = received.message
    customer, _ = services.attach_identities(message.customer, others, merge=False)
    if session.handed_off and received.created:
        inbox_services.record_bot_handoff(message=message, at=session.ended_at or timezone.now())
    session.customer, session.conversation, session.message = customer, message.conversation, message
    session.save(update_fields=["customer", "conversation", "message"])


def session_summary(session: ChatbotSession) -> dict:
    return {"id": session.pk, "session_id": session.session_id, "customer": session.customer_id,
            "conversation": session.conversation_id, "handed_off": session.handed_off,
            "created_at": session.created_at.isoformat()}


class ChatbotSessionView(APIView):
    authentication_classes = [StaffTokenAuthentication]
    permission_classes = [CanPostChatbotSessions]

    @extend_schema(request=ChatbotSessionSerializer, responses={201: dict, 200: dict})
    def post(self, request):
        serializer = ChatbotSessionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session, created = record_session(serializer.validated_data)
        return Response(session_summary(session), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
