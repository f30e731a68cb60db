"""The base of every channel adapter, on the model of Anymail's AnymailCoreWebhookView.

An adapter's webhook is a subclass of ``WebhookAdapter`` that names its
``source`` and does two things:

- ``validate_request(request)``: refuse what does not prove it comes from the
  vendor (shared secret, signature, constant-time compares) by raising
  ``Refused``. Every ``validate_request`` along the class chain runs, base
  classes first, so a mixin that checks a secret cannot be skipped by a
  subclass that checks a signature. Nothing is read or stored before they pass.
- ``parse_events(request)``: turn the payload into ``InboundMessage`` and
  ``DeliveryReport`` values (raise ``BadPayload`` for what cannot be read).
- optionally ``receive(request, events)``: by default the events are
  dispatched at once and the outcome answered.

The base dispatches them: inbound messages to inbox.services.receive_many (one
by one with receive_message if the batch meets a constraint), delivery reports
to inbox.services.update_delivery; and counts every outcome per source in
IngestCount rows, which ops read with ``manage.py channel_counts``. Pollers
(IMAP, the SMS sync) call ``dispatch()`` and ``count()`` directly.
"""
import hmac
import logging
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from inbox import services
from inbox.models import Message

from .models import IngestCount

logger = logging.getLogger(__name__)


@dataclass
class InboundMessage:
    """One message from outside, as inbox.services.receive_message takes it."""
    channel: str
    sender: str
    external_id: str
    text: str = ""
    html: str = ""
    subject: str = ""
    sender_kind: str | None = None  # default: the channel's identity kind (inbox/channels.py)
    sender_name: str = ""
    received_at: datetime | None = None
    metadata: dict = field(default_factory=dict)
    open_new: bool = True


INBOUND_FIELDS = tuple(f.name for f in fields(InboundMessage))


@dataclass
class DeliveryReport:
    """What the vendor says became of a message we sent (found by its channel and the vendor's id)."""
    channel: str
    external_id: str
    status: str  # one of inbox.services.DELIVERY_RANK
    reason: str = ""


class Refused(Exception):
    """The request does not prove where it comes from: answered with status, nothing read or stored."""

    def __init__(self, reason: str, *, status: int = 403, outcome: str = "refused"):
        super().__init__(reason)
        self.reason, self.status, self.outcome = reason, status, outcome


class BadPayload(Exception):
    """Proven, but unreadable: 400 with the reason."""


# --- counting -----------------------------------------------------------------------

def count(source: str, outcome: str, n: int = 1) -> None:
    """Add n to today's count of this outcome for this source (shared by every process)."""
    if n <= 0:
        return
    key = {"source": source[:40], "outcome": outcome[:40], "day": timezone.localdate()}
    if IngestCount.objects.filter(**key).update(count=F("count") + n):
        return
    try:
        with transaction.atomic():
            IngestCount.objects.create(**key, count=n)
    except IntegrityError:  # another process made today's row a moment ago
        IngestCount.objects.filter(**key).update(count=F("count") + n)


def counted(source: str, outcome: str, *, day=None) -> int:
    """Today's (or that day's) count."""
    found = IngestCount.objects.filter(source=source, outcome=outcome, day=day or timezone.localdate()).first()
    return found.count if found else 0


# --- dispatching -------------------------------------------------------------------

@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    invalid: int = 0  # an inbound message that cannot be stored (e.g. an unreadable sender): logged
    updated: int = 0
    unmatched: int = 0


def dispatch(source: str, events: list) -> Outcome:
    """Store the inbound messages and apply the delivery reports among events; count the outcomes."""
    outcome = Outcome()
    inbound = [event for event in events if isinstance(event, InboundMessage)]
    for received in _receive(source, inbound) if inbound else []:
        if received is None:
            outcome.invalid += 1
        elif received.created:
            outcome.accepted += 1
        else:
            outcome.duplicates += 1
    for report in (event for event in events if isinstance(event, DeliveryReport)):
        message = Message.objects.filter(channel=report.channel, external_id=report.external_id,
                                         direction=Message.Direction.OUTBOUND).first()
        if message is None:
            outcome.unmatched += 1
            logger.info("%s: delivery report for unknown message %s", source, report.external_id)
            continue
        services.update_delivery(message=message, status=report.status, reason=report.reason)
        outcome.updated += 1
    for name, n in asdict(outcome).items():
        count(source, name, n)
    return outcome


def _receive(source: str, inbound: list) -> list:
    """One Received per message, or None for one that cannot be stored."""
    # Shallow: asdict() deep-copies every metadata dict, and receive_many copies them anyway.
    items = [{name: getattr(message, name) for name in INBOUND_FIELDS} for message in inbound]
    try:
        with services.receiving_in_bulk(), transaction.atomic():
            return services.receive_many(items)
    except (IntegrityError, ValidationError):
        # Another delivery stored one of them meanwhile, or one is unreadable: one by one,
        # each absorbing its own duplicate; the unreadable one is logged and left out.
        return [_receive_one(source, item) for item in items]


def _receive_one(source: str, item: dict):
    try:
        return services.receive_message(**item)
    except ValidationError as exc:
        logger.warning("%s: message %s not stored: %s", source, item.get("external_id"), " ".join(exc.messages))
        return None


# --- the webhook view ------------------------------------------------------------------

@method_decorator(csrf_exempt, name="dispatch")
class WebhookAdapter(View):
    """Subclass: set source, define validate_request and parse_events. See the module's docstring."""

    source = ""
    http_method_names = ["post"]

    def validate_request(self, request) -> None:
        """Raise Refused unless the request proves it comes from the vendor."""

    def parse_events(self, request) -> list:
        raise NotImplementedError

    def receive(self, request, events: list) -> dict:
        """Store the events and answer what became of them. An adapter may store later instead
        (RingCentral queues the notification durably and answers at once)."""
        return asdict(dispatch(self.source, events))

    def run_validators(self, request) -> None:
        for cls in reversed(type(self).__mro__):
            validator = cls.__dict__.get("validate_request")
            if validator is not None:
                validator(self, request)

    def post(self, request, *args, **kwargs):
        try:
            self.run_validators(request)
        except Refused as exc:
            count(self.source, exc.outcome)
            logger.warning("%s webhook refused (%s): %s", self.source, exc.outcome, exc.reason)
            return HttpResponse(exc.reason, status=exc.status, content_type="text/plain")
        try:
            events = self.parse_events(request)
        except BadPayload as exc:
            count(self.source, "bad_payload")
            logger.warning("%s webhook: unreadable payload: %s", self.source, exc)
            return HttpResponse(f"Unreadable payload: {exc}", status=400, content_type="text/plain")
        return JsonResponse(self.receive(request, events))


def secrets_match(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (False when either is empty)."""
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
