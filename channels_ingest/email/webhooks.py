"""SendGrid's tracking and inbound webhooks, on Anymail's views, made strict:

- only SendGrid's two routes exist (channels_ingest/urls.py), and only while
  settings.EMAIL_WEBHOOKS is on (404 otherwise); our signal handlers ignore
  (log and count) events from any other provider's Anymail view;
- no ANYMAIL_WEBHOOK_SECRET configured -> 403 for everything (Anymail alone
  would only warn and accept anyone's posts);
- wrong or missing basic auth, or a bad signature when
  SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY is set -> 400 from Anymail, before
  anything is read or stored;
- a body that is not what SendGrid sends -> 400 with a reason, counted; one bad
  event in a batch is skipped and counted, the others are applied;
- a body over its limit -> 413 with the sizes, counted. Tracking keeps
  Django's DATA_UPLOAD_MAX_MEMORY_SIZE; inbound mail (SendGrid posts the whole
  MIME as one form field) may be as large as EMAIL_MAX_MESSAGE_BYTES plus
  INBOUND_FORM_OVERHEAD: that view reads and parses its own body, after the
  basic auth check, and never changes the global setting.
Our handlers are connected to Anymail's signals here, so they are in place
whenever these views are routed.
"""
import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from io import BytesIO

from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import inbound, tracking
from anymail.webhooks.sendgrid import SendGridInboundWebhookView, SendGridTrackingWebhookView
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.dispatch import receiver
from django.http import (
    Http404, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden, QueryDict, UnreadablePostError,
)
from django.http.multipartparser import (
    FIELD, FILE, ChunkIter, LazyStream, MultiPartParser, MultiPartParserError, Parser, exhaust,
)
from django.utils.datastructures import MultiValueDict
from django.utils.encoding import force_str

from ..base import count
from . import tracking as tracking_events
from .ingest import DUPLICATE, REJECTED, STORED, store_email

logger = logging.getLogger(__name__)


# An inbound email's outcome, in the words every channel source counts with (channels_ingest.base).
OUTCOMES = {STORED: "accepted", DUPLICATE: "duplicates", REJECTED: "rejected"}
# The esp_name Anymail's SendGrid views send with their signals ("SendGrid").
ESP_NAME = SendGridTrackingWebhookView.esp_name
# Room for the form fields SendGrid posts beside the message itself (envelope, charsets, spam report, ...).
INBOUND_FORM_OVERHEAD = 1024 * 1024


def inbound_body_limit() -> int:
    return settings.EMAIL_MAX_MESSAGE_BYTES + INBOUND_FORM_OVERHEAD


class BadPayload(Exception):
    pass


class TooLarge(Exception):
    def __init__(self, size: int, limit: int):
        super().__init__(f"{size:,} bytes, over the {limit:,}-byte limit")
        self.size, self.limit = size, limit


class _Strict:
    def head(self, request, *args, **kwargs):
        self._check_enabled()
        return super().head(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        self._check_enabled()
        if not self.basic_auth:
            count(self.source, "refused_unconfigured")
            logger.warning("SendGrid %s webhook: refused a post, ANYMAIL_WEBHOOK_SECRET is not configured", self.kind)
            return HttpResponseForbidden("This webhook is off until ANYMAIL_WEBHOOK_SECRET is configured.")
        try:
            self.read_request(request)
            return super().post(request, *args, **kwargs)
        except BadPayload as exc:
            count(self.source, "bad_payload")
            logger.warning("SendGrid %s webhook: unreadable payload: %s", self.kind, exc)
            return HttpResponseBadRequest(f"Unreadable {self.kind} payload: {exc}")
        except TooLarge as exc:
            return self._too_large(str(exc))
        except AnymailWebhookValidationFailure as exc:  # wrong basic auth or signature: Django answers 400
            count(self.source, "refused_auth")
            logger.warning("SendGrid %s webhook: refused a post that did not authenticate: %s", self.kind, exc)
            raise
        except RequestDataTooBig:
            return self._too_large(f"over Django's {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,}-byte "
                                   "DATA_UPLOAD_MAX_MEMORY_SIZE")

    def read_request(self, request):
        """Read what the view needs before Anymail does; nothing by default."""

    def _check_enabled(self):
        if not settings.EMAIL_WEBHOOKS:
            count(self.source, "refused_disabled")
            logger.warning("SendGrid %s webhook: refused a request, EMAIL_WEBHOOKS is off", self.kind)
            raise Http404("The email webhooks are off (EMAIL_WEBHOOKS).")

    def _too_large(self, detail):
        count(self.source, "refused_too_large")
        logger.warning("SendGrid %s webhook: refused a post of %s", self.kind, detail)
        return HttpResponse(f"This {self.kind} post is too large: {detail}.", status=413, content_type="text/plain")


class TrackingWebhook(_Strict, SendGridTrackingWebhookView):
    kind = "tracking"
    source = "sendgrid-tracking"  # its counted outcomes (manage.py channel_counts)

    def parse_events(self, request):
        try:
            esp_events = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadPayload(f"not JSON ({exc})")
        if not isinstance(esp_events, list):
            raise BadPayload("expected a JSON array of events")
        events = []
        for esp_event in esp_events:
            try:
                if not isinstance(esp_event, dict) or not isinstance(esp_event.get("event"), str):
                    raise ValueError("an event must be an object with an 'event' name")
                events.append(self.esp_to_anymail_event(esp_event))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as exc:
                count(self.source, "bad_event")
                logger.warning("SendGrid tracking: skipped an unreadable event (%s): %.200r", exc, esp_event)
        return events


@dataclass
class InboundPost:
    """What Anymail's SendGrid inbound parser reads from a request, read by us within our own limit.

    It is the inbound event's esp_event. raw_fields: the undecoded bytes of each form field
    (the "email" field is the original MIME, byte for byte).
    """
    META: dict
    body: bytes
    POST: QueryDict
    FILES: MultiValueDict
    raw_fields: dict = field(default_factory=dict)


class InboundFormParser(MultiPartParser):
    """Django's multipart/form-data parser with the inbound view's own size limit.

    MultiPartParser limits form fields to settings.DATA_UPLOAD_MAX_MEMORY_SIZE, which is global;
    here the body has already been read within inbound_body_limit(), so every part is kept in
    memory. Field and file counts keep Django's limits.
    """

    def __init__(self, META, body: bytes, encoding=None):
        super().__init__({**META, "CONTENT_LENGTH": str(len(body))}, BytesIO(body), [], encoding)
        self._chunk_size = 64 * 1024
        self.raw_fields = {}

    def _parse(self):
        post, files = QueryDict(mutable=True, encoding=self._encoding), MultiValueDict()
        if self._content_length == 0:
            return post, files
        fields = uploads = 0
        for item_type, meta, part in Parser(LazyStream(ChunkIter(self._input_data, self._chunk_size)), self._boundary):
            try:
                disposition = meta["content-disposition"][1]
                name = force_str(disposition["name"].strip(), self._encoding, errors="replace")
            except (KeyError, IndexError, AttributeError, TypeError):
                exhaust(part)
                continue
            data = part.read()
            encoding = meta.get("content-transfer-encoding")
            if encoding is not None and encoding[0].strip().lower() == "base64":
                try:
                    data = base64.b64decode(data)
                except binascii.Error:
                    raise MultiPartParserError(f"field {name!r}: invalid base64")
            if item_type == FIELD:
                fields += 1
                if _over(fields, settings.DATA_UPLOAD_MAX_NUMBER_FIELDS):
                    raise MultiPartParserError(f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields")
                self.raw_fields[name] = data  # the last, as POST[name] gives
                post.appendlist(name, force_str(data, self._encoding, errors="replace"))
            elif item_type == FILE:
                uploads += 1
                if _over(uploads, settings.DATA_UPLOAD_MAX_NUMBER_FILES):
                    raise MultiPartParserError(f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files")
                filename = self.sanitize_file_name(force_str(disposition.get("filename") or "", self._encoding,
                                                             errors="replace"))
                if not filename:
                    continue
                content_type, extra = meta.get("content-type", ("", {}))
                files.appendlist(name, InMemoryUploadedFile(BytesIO(data), name, filename, content_type.strip(),
                                                            len(data), extra.get("charset"), extra))
        post._mutable = False
        return post, files


def _over(count: int, limit: int | None) -> bool:
    return limit is not None and count > limit


def read_inbound_post(request) -> InboundPost:
    """The request's form, read within inbound_body_limit(): TooLarge over it, BadPayload if unreadable."""
    limit = inbound_body_limit()
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadPayload("invalid Content-Length")
    if declared > limit:
        raise TooLarge(declared, limit)
    try:
        body = request.read(limit + 1)  # Content-Length may be absent or understated
    except UnreadablePostError as exc:
        raise BadPayload(f"the body could not be read ({exc})")
    if len(body) > limit:
        raise TooLarge(len(body), limit)
    raw_fields = {}
    try:
        if request.content_type == "multipart/form-data":
            parser = InboundFormParser(request.META, body, request.encoding)
            post, files = parser.parse()
            raw_fields = parser.raw_fields
        elif request.content_type == "application/x-www-form-urlencoded":
            post, files = QueryDict(body, encoding="utf-8"), MultiValueDict()
        else:
            raise BadPayload(f"expected multipart/form-data, not {request.content_type or 'no content type'}")
    except (MultiPartParserError, SuspiciousOperation, ValueError) as exc:
        raise BadPayload(f"unreadable form ({str(exc) or type(exc).__name__})")
    return InboundPost(META=request.META, body=body, POST=post, FILES=files, raw_fields=raw_fields)


class InboundWebhook(_Strict, SendGridInboundWebhookView):
    kind = "inbound"
    source = "sendgrid-inbound"  # its counted outcomes (manage.py channel_counts)
    form = None

    def read_request(self, request):
        self.run_validators(request)  # basic auth first: nobody else makes us read a large body
        self.form = read_inbound_post(request)

    def parse_events(self, request):
        try:
            return [self.esp_to_anymail_event(self.form)]
        except (KeyError, TypeError, ValueError, UnicodeError, LookupError, MultiPartParserError) as exc:
            raise BadPayload(str(exc) or type(exc).__name__)


def _from_sendgrid(esp_name, kind) -> bool:
    """Only SendGrid's (strict) views are ours: another provider's Anymail event is ignored, logged and counted."""
    if esp_name == ESP_NAME:
        return True
    count(f"sendgrid-{kind}", "ignored_other_esp")
    logger.warning("ignored an Anymail %s event from %r: only SendGrid's webhooks are ours", kind, esp_name)
    return False


@receiver(tracking, dispatch_uid="channels_ingest.email.tracking")
def on_tracking(sender, event, esp_name, **kwargs):
    if _from_sendgrid(esp_name, "tracking"):
        tracking_events.handle(event)


@receiver(inbound, dispatch_uid="channels_ingest.email.inbound")
def on_inbound(sender, event, esp_name, **kwargs):
    if not _from_sendgrid(esp_name, "inbound"):
        return
    result = store_email(raw_from_inbound(event), source="sendgrid-inbound")
    count(InboundWebhook.source, OUTCOMES[result.status])


def raw_from_inbound(event) -> bytes:
    """The original MIME when SendGrid posted it ("Send Raw"), else Anymail's rebuilt message."""
    esp = event.esp_event
    raw = getattr(esp, "raw_fields", {}).get("email")
    if raw is not None:
        return raw
    post = getattr(esp, "POST", None)
    if post is not None and "email" in post:
        return post["email"].encode("utf-8", "surrogateescape")
    try:
        return event.message.as_bytes()
    except (UnicodeError, LookupError, ValueError, TypeError) as exc:
        logger.warning("inbound email could not be re-serialised (%s); storing its text form", exc)
        return event.message.as_string().encode("utf-8", "replace")


tracking_view = TrackingWebhook.as_view()
inbound_view = InboundWebhook.as_view()
