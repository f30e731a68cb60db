"""A local stand-in for SendGrid's v3 Mail Send API: real HTTP on loopback.

POST /v3/mail/send with ``Authorization: Bearer <key>`` and the documented JSON
body answers 202 with an ``X-Message-Id`` header and an empty body, as SendGrid
does; a bad key answers 401, a malformed body 400 with SendGrid's error shape.
``fail_next(status, times)`` makes the next requests answer 429/500/... to
exercise retries. Our client code (Anymail's SendGrid backend) does not know
it is talking to a stand-in.
"""
import json
import re
import secrets
import threading

from .loopback import LoopbackServer

RESERVED_HEADERS = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type", "content-transfer-encoding",
                    "to", "from", "subject", "reply-to", "cc", "bcc"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def validate(body) -> list:
    """Problems SendGrid would report for this mail/send body ([] when it is fine)."""
    errors = []

    def err(message, field=None):
        errors.append({"message": message, "field": field, "help": None})

    if not isinstance(body, dict):
        return [{"message": "Bad Request", "field": None, "help": None}]
    people = body.get("personalizations")
    if not isinstance(people, list) or not 1 <= len(people) <= 1000:
        err("The personalizations field is required and must have at least one personalization.", "personalizations")
        people = []
    total = 0
    for i, person in enumerate(people):
        to = person.get("to") if isinstance(person, dict) else None
        if not isinstance(to, list) or not to:
            err("The to array is required for all personalization objects.", f"personalizations.{i}.to")
            continue
        for kind in ("to", "cc", "bcc"):
            for address in person.get(kind, []):
                total += 1
                if not isinstance(address, dict) or not EMAIL.match(str(address.get("email", ""))):
                    err("Does not contain a valid address.", f"personalizations.{i}.{kind}")
        for name in ("headers", "substitutions", "custom_args"):
            value = person.get(name, {})
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                err(f"{name} values must be strings.", f"personalizations.{i}.{name}")
    if total > 1000:
        err("The total number of recipients must be no more than 1000.", "personalizations")
    sender = body.get("from")
    if not isinstance(sender, dict) or not EMAIL.match(str(sender.get("email", ""))):
        err("The from object must be provided for every email send.", "from")
    templated = bool(body.get("template_id"))
    if not templated:
        if not body.get("subject") and not all(isinstance(p, dict) and p.get("subject") for p in people):
            err("The subject is required.", "subject")
        content = body.get("content")
        if not isinstance(content, list) or not content or not all(
                isinstance(c, dict) and c.get("type") and c.get("value") for c in content):
            err("Unless a valid template_id is provided, the content parameter is required.", "content")
        elif any(c["type"] == "text/plain" for c in content) and content[0]["type"] != "text/plain":
            err("If present, text/plain must be first in the content array.", "content")
    headers = body.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        err("headers values must be strings.", "headers")
    elif RESERVED_HEADERS & {h.lower() for h in headers}:
        err("These headers cannot be set: " + ", ".join(sorted(RESERVED_HEADERS & {h.lower() for h in headers})),
            "headers")
    return errors


class SendGridStandIn(LoopbackServer):
    def __init__(self, api_key="SG.test-key"):
        self.api_key = api_key
        self.requests = []
        self.keep_bodies = True
        self.recipients = 0
        self._failures = []
        self._lock = threading.Lock()
        super().__init__()
        self.url = f"{self.base_url}/v3/"

    def reset(self):
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self.recipients = 0

    def fail_next(self, status: int, times: int = 1):
        with self._lock:
            self._failures += [status] * times

    @property
    def sent(self):
        """Bodies of the accepted requests."""
        return [r["json"] for r in self.requests if r["status"] == 202]

    def handle(self, handler, method):
        length = int(handler.headers.get("Content-Length", 0))
        raw = handler.rfile.read(length)
        if handler.path.rstrip("/") != "/v3/mail/send":
            return self.answer(handler, 404, {"errors": [{"message": "Not found", "field": None, "help": None}]})
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.answer(handler, 401, {"errors": [{
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None, "help": None}]})
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            record = {"status": failure, "json": None}
            with self._lock:
                self.requests.append(record)
            extra = {"Retry-After": "1"} if failure == 429 else {}
            return self.answer(handler, failure, {"errors": [{"message": "standin failure", "field": None,
                                                               "help": None}]}, extra)
        try:
            body = json.loads(raw)
        except ValueError:
            return self.answer(handler, 400, {"errors": [{"message": "Bad Request", "field": None, "help": None}]})
        problems = validate(body)
        status = 400 if problems else 202
        with self._lock:
            self.requests.append({"status": status, "json": body if self.keep_bodies else None,
                                  "headers": dict(handler.headers)})
            if not problems:
                self.recipients += sum(len(p["to"]) for p in body["personalizations"])
        if problems:
            return self.answer(handler, 400, {"errors": problems})
        self.answer(handler, 202, headers={"X-Message-Id": secrets.token_urlsafe(16)[:22]})
