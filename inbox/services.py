"""Every write to the inbox. One transaction each; events are recorded inside
it and broadcast when it commits (see events.py).

Channel adapters call ``receive_message`` / ``receive_many`` (which hand over
to receiving.py); staff actions (screens, API, admin) call ``reply``,
``set_status``, ``assign``, ``add_note``, ``mark_read``; senders and tracking
webhooks call ``update_delivery``. Some of these live in smaller modules by
what they touch (changes.py, delivery.py, receiving.py) and are re-exported
here: callers outside the inbox use this module only.
"""
import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from crm.models import Booking
from myhibachi.models import signature_of
from myhibachi.roles import is_staff_member

from . import attachments as stored_files
from . import canned, channels, events, history, receiving
from .changes import TRANSITIONS, assign, locked, set_status
from .delivery import DELIVERY_RANK, update_delivery
from .errors import CannotReply, InboxError, InvalidTransition, ReplyTooLarge, StaleReply
from .models import CannedResponse, Conversation, Message, Note, Tag
from .payloads import conversation_summary, mention, message_summary, note_summary
from .receiving import Received
from .tagging import add_tag, remove_tag
from .receiving import in_bulk as receiving_in_bulk
from .tasks import deliver_message

__all__ = [
    "receive_message", "receive_many", "receiving_in_bulk", "Received",
    "reply", "retry_reply", "send_by_email_instead", "default_reply_channel", "annotate_message", "set_call_back", "CALL_BACK_TAG",
    "render_canned", "add_note", "mark_read", "record_bot_handoff",
    "set_status", "assign", "add_tag", "remove_tag", "locked", "TRANSITIONS", "update_delivery", "DELIVERY_RANK",
    "InboxError", "InvalidTransition", "ReplyTooLarge", "CannotReply", "StaleReply",
    "conversation_summary", "message_summary", "note_summary",
]

Status = Conversation.Status
MAX_NOTE_CHARS = 20_000


# --- inbound ---------------------------------------------------------------

def receive_message(*, channel: str, sender: str, sender_kind: str | None = None, text: str = "",
                    html: str = "", subject: str = "", external_id: str | None = None,
                    metadata: dict | None = None, sender_name: str = "", received_at=None,
                    conversation: Conversation | None = None, open_new: bool = True,
                    route: bool = True, looked_up: bool = False) -> Received:
    """Store one inbound message from any channel and attach it to the customer's thread.

    sender is the email address or phone number it came from (normalised
    here). external_id is the channel's own id; the same (channel,
    external_id) delivered again returns the stored message and changes
    nothing, also when two deliveries race. conversation is a threading hint
    (e.g. from email headers). open_new=False is for auto-replies and
    bounces: they join an existing conversation without reopening it and
    never start one that shows up in the inbox. route=False skips the rules.
    looked_up=True: the caller has just looked (channel, external_id) up and
    found nothing, so it is not looked up again (the unique constraint still
    decides when two deliveries race).
    """
    return receiving.receive(receiving.prepare(
        channel=channel, sender=sender, sender_kind=sender_kind, text=text, html=html, subject=subject,
        external_id=external_id, metadata=metadata, sender_name=sender_name, received_at=received_at,
        conversation=conversation, open_new=open_new, route=route, looked_up=looked_up))


def receive_many(items: list[dict]) -> list[Received]:
    """Store several inbound messages, in order, with a handful of queries for the lot.

    items are receive_message keyword arguments; the result is what calling
    receive_message for each in turn would give (the same conversations,
    statuses, rules and events, in the same order). All or nothing inside the
    caller's transaction: unlike receive_message it does not absorb a
    constraint violation (another worker storing the same message, or
    creating the same customer, at the same moment) but raises it, so the
    caller rolls back and stores the messages again one by one with
    receive_message. See inbox/receiving.py.
    """
    return receiving.receive_batch([receiving.prepare(**item) for item in items])


def record_bot_handoff(*, message: Message, at=None) -> None:
    """History: the chatbot handed the visitor of this (received) transcript over to staff.

    Call inside the transaction that received the transcript: analytics start the first-response
    clock of a handed-off conversation here, not at the bot's first line."""
    history.record(history.Kind.BOT_HANDOFF, message.conversation, at=at or timezone.now(), channel=message.channel,
                   message=message)


# --- staff actions ---------------------------------------------------------

MAX_CC = 10


def reply(*, conversation: Conversation, author, text: str = "", channel: str | None = None,
          canned_response: CannedResponse | None = None, seen_through: int | None = None, cc=None,
          attachments=None) -> Message:
    """Queue a staff reply; a Celery task hands it to the channel's sender after commit.

    seen_through: the id of the newest message of the customer's thread the agent
    had seen when they started writing. Newer messages (the customer's, or other
    staff's replies) hold the reply with StaleReply; None sends without looking
    (the API's and the screen's "send anyway").

    On a channel with subjects (email): cc, addresses copied (at most MAX_CC), and
    attachments, files (Django UploadedFiles) stored like inbound ones (inbox/attachments.py);
    the author's signature (myhibachi.models.StaffProfile) is added below the text.
    Elsewhere either is refused rather than dropped."""
    if canned_response is not None and not text.strip():
        text = render_canned(canned_response, conversation=conversation, agent=author)
    if not text or not text.strip():
        raise ValidationError("A reply cannot be empty.")
    if len(text) > settings.INBOX_MAX_REPLY_CHARS:
        raise ReplyTooLarge(
            f"This reply is {len(text):,} characters; the limit is {settings.INBOX_MAX_REPLY_CHARS:,}."
        )
    with transaction.atomic():
        conversation = locked(conversation)
        if conversation.status == Status.CLOSED:
            raise InvalidTransition("This conversation is closed. Reopen it before replying.")
        if seen_through is not None:
            _hold_if_stale(conversation, author=author, seen_through=seen_through)
        channel, recipient = _reply_channel(conversation.customer, channel)
        spec = channels.get(channel)
        if spec.max_reply_units is not None and channels.utf16_units(text) > spec.max_reply_units:
            raise ReplyTooLarge(
                f"{spec.label} text is limited to {spec.max_reply_units:,} characters (emoji count as two); "
                f"this reply is {channels.utf16_units(text):,}. Shorten it or send it in parts."
            )
        metadata = {"to": recipient} if recipient else {}
        cc = _cc_addresses(cc)
        if (cc or attachments) and not spec.has_subject:
            raise CannotReply(f"Copies and attachments go out by email only, not by {spec.label}.")
        if cc:
            metadata["cc"] = cc
        if attachments:
            metadata["attachments"] = stored_files.store_uploads(attachments)
        if spec.has_subject:
            signature = signature_of(author)
            if signature:
                text = f"{text.rstrip()}\n\n-- \n{signature}"
        now = timezone.now()
        message = Message.objects.create(
            conversation=conversation, customer=conversation.customer, channel=channel,
            direction=Message.Direction.OUTBOUND, text=text, author=author,
            subject=_reply_subject(conversation) if spec.has_subject else "",
            metadata=metadata, delivery_status=Message.DeliveryStatus.QUEUED, created_at=now,
        )
        conversation.last_message = message
        conversation.last_activity_at = now
        conversation.is_unread = False
        fields = ["last_message", "last_activity_at", "is_unread"]
        if conversation.first_response_at is None:
            conversation.first_response_at = now
            fields.append("first_response_at")
        conversation.save(update_fields=fields)
        # Answered: no longer waiting for a call back (one DELETE).
        Conversation.tags.through.objects.filter(conversation=conversation, tag__name=CALL_BACK_TAG).delete()
        history.record(history.Kind.REPLIED, conversation, at=now, actor=author, channel=channel, message=message)
        events.record(events.MESSAGE_CREATED, conversation=conversation, payload=message_summary(message))
        events.record(events.CONVERSATION_UPDATED, conversation=conversation,
                      payload=conversation_summary(conversation))
        transaction.on_commit(lambda: deliver_message.delay(message.pk))
    return message


# The tag on a conversation with a missed call or voicemail nobody has answered yet (a reply or a call clears it).
CALL_BACK_TAG = "call-back"


def set_call_back(*, conversation: Conversation, needed: bool) -> None:
    """Mark the conversation "call back" (a missed call or voicemail) or clear the mark."""
    with transaction.atomic():
        tag, _ = Tag.objects.get_or_create(name=CALL_BACK_TAG)
        has = conversation.tags.filter(pk=tag.pk).exists()
        if has == needed:
            return
        (conversation.tags.add if needed else conversation.tags.remove)(tag)
        events.record(events.CONVERSATION_UPDATED, conversation=conversation,
                      payload=conversation_summary(conversation))


def annotate_message(*, message: Message, metadata: dict) -> Message:
    """Merge channel facts learnt after a message was stored (a downloaded MMS image, a call recording)
    into its metadata, and tell open threads it changed."""
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        message.metadata = {**message.metadata, **metadata}
        message.save(update_fields=["metadata"])
        events.record(events.MESSAGE_UPDATED, conversation=message.conversation, payload=message_summary(message))
    return message


STALE_MESSAGE = "New activity since you started — review before sending."
MAX_STALE_ITEMS = 20


def _hold_if_stale(conversation, *, author, seen_through: int) -> None:
    """Under the conversation's lock (replies to it queue behind each other): refuse when
    the customer's thread has messages newer than seen_through that this agent did not write."""
    newer = list(
        Message.objects.filter(customer_id=conversation.customer_id, id__gt=seen_through)
        .exclude(direction=Message.Direction.OUTBOUND, author=author)
        .select_related("author").order_by("-created_at", "-id")[:MAX_STALE_ITEMS]
    )
    if newer:
        newer.reverse()
        raise StaleReply(STALE_MESSAGE, new_messages=newer)


def _locked_failed_reply(message: Message) -> Message:
    message = Message.objects.select_for_update().select_related("conversation__customer").get(pk=message.pk)
    if message.direction != Message.Direction.OUTBOUND:
        raise ValidationError("Only a reply to the customer can be sent again.")
    return message


def retry_reply(*, message: Message, by, attempt: int | None = None) -> Message:
    """Send a failed reply again, on its channel. Idempotent: a reply that is not failed
    (already queued again, or sent) is left alone, and attempt (how many retries the
    person saw, metadata["retries"]) makes a repeated click of the same Retry a no-op
    even after the new attempt failed too."""
    with transaction.atomic():
        message = _locked_failed_reply(message)
        retries = int((message.metadata or {}).get("retries", 0))
        if message.delivery_status != Message.DeliveryStatus.FAILED or (attempt is not None and attempt != retries):
            return message
        if message.metadata.get("resent_as"):
            raise InvalidTransition("This reply was already sent again by email.")
        why = channels.reply_options(message.conversation.customer).reason(message.channel)
        if why:
            raise CannotReply(why)
        # The one move of a delivery status backwards (failed -> queued), made here on
        # purpose; update_delivery only moves it forward.
        message.metadata = {**message.metadata, "retries": retries + 1, "last_failure": message.status_reason}
        message.delivery_status = Message.DeliveryStatus.QUEUED
        message.status_reason = ""
        message.save(update_fields=["delivery_status", "status_reason", "metadata"])
        events.record(events.MESSAGE_UPDATED, conversation=message.conversation, payload=message_summary(message))
        transaction.on_commit(lambda: deliver_message.delay(message.pk))
    return message


def send_by_email_instead(*, message: Message, by) -> Message:
    """Send the text of a failed reply as a new email reply; returns the email. Idempotent:
    the failed reply remembers the email (metadata["resent_as"]) and a second call returns it."""
    with transaction.atomic():
        message = _locked_failed_reply(message)
        resent = (message.metadata or {}).get("resent_as")
        if resent:
            return Message.objects.get(pk=resent)
        if message.delivery_status != Message.DeliveryStatus.FAILED:
            raise InvalidTransition("This reply has not failed, so it is not sent again.")
        if message.channel == "email":
            raise InvalidTransition("This reply was an email already; use Retry.")
        email = reply(conversation=message.conversation, author=by, text=message.text, channel="email")
        email.metadata = {**email.metadata, "resent_from": message.pk}
        email.save(update_fields=["metadata"])
        message.metadata = {**message.metadata, "resent_as": email.pk}
        message.save(update_fields=["metadata"])
        events.record(events.MESSAGE_UPDATED, conversation=message.conversation, payload=message_summary(message))
    return email


def default_reply_channel(customer) -> str | None:
    """The channel a reply goes out on when none is named (channels.reply_options: the channel the
    customer last wrote on when it can send now); None when no channel can."""
    return channels.reply_options(customer).default


def _reply_channel(customer, channel: str | None) -> tuple[str, str | None]:
    """The channel this reply goes out on (the one asked for, or the default) and the address it goes
    to (None: the channel's own session, the chat); CannotReply with channels.reply_options' reason
    when it cannot send now (no sender, no address, no chat, opted out)."""
    options = channels.reply_options(customer)
    if channel is None:
        if options.default is None:
            reasons = " ".join(why for _, why in options.missing)
            raise CannotReply(f"No channel can reach {customer.name} right now. {reasons}".strip())
        channel = options.default
    why = options.reason(channel)
    if why:
        raise CannotReply(why)
    return channel, options.addresses.get(channel)


def _cc_addresses(cc) -> list[str]:
    """Copy addresses from a list or a comma/semicolon/space separated string, checked and deduplicated."""
    if not cc:
        return []
    raw = re.split(r"[,;\s]+", cc) if isinstance(cc, str) else list(cc)
    found = []
    for address in raw:
        address = str(address).strip().lower()
        if not address:
            continue
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(f"{address[:100]!r} is not an email address; separate copies with commas.")
        if address not in found:
            found.append(address)
    if len(found) > MAX_CC:
        raise ValidationError(f"{len(found)} copy addresses; a reply can copy at most {MAX_CC}.")
    return found


def _reply_subject(conversation) -> str:
    subject = conversation.subject or "Your My Hibachi event"
    return subject if re.match(r"(?i)^re:", subject) else f"Re: {subject}"


def render_canned(response: CannedResponse, *, conversation, agent) -> str:
    booking = (
        Booking.objects.filter(
            customer_id=conversation.customer_id, event_at__gte=timezone.now(),
            status__in=[Booking.Status.INQUIRY, Booking.Status.QUOTED, Booking.Status.CONFIRMED],
        ).order_by("event_at").first()
    )
    return canned.render(response.body, canned.context_for(customer=conversation.customer, agent=agent, booking=booking))


MENTION = re.compile(r"(?<![\w@])@([\w.+-]+)")


def add_note(*, conversation: Conversation, author, body: str) -> Note:
    body = (body or "").strip()
    if not body:
        raise ValidationError("A note cannot be empty.")
    if len(body) > MAX_NOTE_CHARS:
        raise ReplyTooLarge(f"This note is {len(body):,} characters; the limit is {MAX_NOTE_CHARS:,}.")
    with transaction.atomic():
        conversation = locked(conversation)
        note = Note.objects.create(conversation=conversation, customer=conversation.customer, author=author, body=body)
        history.record(history.Kind.NOTE, conversation, at=note.created_at, actor=author)
        events.record(events.NOTE_CREATED, conversation=conversation, payload=note_summary(note))
        usernames = {name.rstrip(".") for name in MENTION.findall(body)}
        if usernames:
            for user in get_user_model().objects.filter(username__in=usernames, is_active=True):
                if is_staff_member(user) and user != author:
                    events.record(events.MENTION, conversation=conversation, recipient=user,
                                  payload=mention(note, author=author, customer=conversation.customer))
    return note


def mark_read(*, conversation: Conversation, by) -> Conversation:
    if not conversation.is_unread:
        return conversation
    with transaction.atomic():
        updated = Conversation.objects.filter(pk=conversation.pk, is_unread=True).update(is_unread=False)
        conversation.is_unread = False
        if updated:
            events.record(events.CONVERSATION_UPDATED, conversation=conversation,
                          payload=conversation_summary(conversation, by=by))
    return conversation
