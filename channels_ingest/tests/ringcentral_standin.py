"""A local stand-in for RingCentral's REST API: real HTTP on loopback.

Paths, auth, payload shapes and status codes follow RingCentral's published
OpenAPI (sms, message-store, call-log, subscriptions, ringout, oauth):

- ``POST /restapi/oauth/token``: the JWT bearer grant with the client id and
  secret as basic auth; tokens expire after ``token_ttl`` seconds (or at once
  with ``expire_tokens()``); every other path answers 401 without a live one.
- ``POST …/extension/~/sms``: text of at most 1,000 UTF-16 units; answers a
  message record with ``messageStatus`` Queued. ``fail_next(status, …)`` makes
  the next calls (optionally only on paths containing a string) answer
  429 with ``Retry-After`` or 503.
- ``GET …/message-sync`` (FSync with dateFrom, ISync with the syncToken it gave),
  ``GET …/message-store`` (page/perPage with navigation), attachment content.
- ``GET …/call-log`` (paged), recording content.
- ``POST …/ring-out``.
- ``POST /restapi/v1.0/subscription`` and ``PUT …/subscription/{id}``: before
  answering a creation, it POSTs to the webhook address with a
  ``Validation-Token`` header and requires it echoed in a 200, as RingCentral does.

Tests add inbound SMS/MMS and calls with ``add_message`` / ``add_call`` and
read what our client sent in ``sent`` and ``requests``.
"""
import base64
import itertools
import json
import secrets
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

from .loopback import LoopbackServer

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
EXT = "/restapi/v1.0/account/~/extension/~"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class RingCentralStandIn(LoopbackServer):
    methods = ("GET", "POST", "PUT")

    def __init__(self, *, client_id="rc-client-id", client_secret="rc-client-secret", jwt="rc.jwt.assertion",
                 token_ttl=3600):
        self.client_id, self.client_secret, self.jwt = client_id, client_secret, jwt
        self.token_ttl = token_ttl
        self._lock = threading.Lock()
        self._ids = itertools.count(10_000_001)
        self.reset()
        super().__init__()
        self.url = self.base_url

    def reset(self):
        with self._lock:
            self.tokens = {}  # access token -> expiry (epoch seconds)
            self.token_grants = 0
            self.requests = []  # (method, path) of every call
            self.sent = []  # bodies of accepted SMS sends
            self.ringouts = []
            self.messages = []  # message-store records, with a modification sequence
            self.calls = []
            self.content = {}  # path -> (bytes, content type)
            self.subscriptions = {}
            self.validation_answers = []
            self._failures = []
            self._seq = 0

    def expire_tokens(self):
        with self._lock:
            self.tokens = {token: 0 for token in self.tokens}

    def fail_next(self, status: int, times: int = 1, *, retry_after: int | None = None, path_contains: str = ""):
        with self._lock:
            self._failures += [(status, retry_after, path_contains)] * times

    def _next_id(self) -> int:
        return next(self._ids)

    def _touch(self, record):
        self._seq += 1
        record["_seq"] = self._seq
        record["lastModifiedTime"] = iso(datetime.now(timezone.utc))

    def add_message(self, *, from_number="+14155550100", to_number="+14155550199", text="Hello", direction="Inbound",
                    created=None, attachments=(), status=None) -> dict:
        """An SMS (or MMS with attachments: [(bytes, content type, file name)]) in the message store."""
        with self._lock:
            message_id = self._next_id()
            uri = f"{self.url}{EXT}/message-store/{message_id}"
            record = {
                "uri": uri, "id": message_id, "type": "SMS", "direction": direction,
                "from": {"phoneNumber": from_number}, "to": [{"phoneNumber": to_number}], "subject": text,
                "creationTime": iso(created or datetime.now(timezone.utc)), "readStatus": "Unread",
                "messageStatus": status or ("Received" if direction == "Inbound" else "Queued"),
                "availability": "Alive", "conversation": {"id": str(900_000 + message_id % 1000)},
                "attachments": [{"id": self._next_id(), "uri": f"{uri}/content/text", "type": "Text",
                                 "contentType": "text/plain"}],
            }
            for data, content_type, name in attachments:
                attachment_id = self._next_id()
                path = f"{EXT}/message-store/{message_id}/content/{attachment_id}"
                self.content[path] = (data, content_type)
                record["attachments"].append({"id": attachment_id, "uri": self.url + path, "type": "MmsAttachment",
                                              "contentType": content_type, "fileName": name, "size": len(data)})
            self._touch(record)
            self.messages.append(record)
            return record

    def set_status(self, message_id, status: str, error_code: str = ""):
        with self._lock:
            record = next(r for r in self.messages if r["id"] == int(message_id))
            record["messageStatus"] = status
            if error_code:
                record["errorCode"] = error_code
            self._touch(record)

    def add_call(self, *, from_number="+14155550100", to_number="+14155550199", direction="Inbound",
                 result="Missed", duration=0, start=None, recording: bytes | None = None) -> dict:
        with self._lock:
            call_id = self._next_id()
            record = {
                "uri": f"{self.url}/restapi/v1.0/account/~/call-log/{call_id}", "id": f"Y{call_id}A",
                "sessionId": str(40_000_000_000 + call_id), "telephonySessionId": f"s-{call_id}",
                "startTime": iso(start or datetime.now(timezone.utc)), "duration": duration, "type": "Voice",
                "direction": direction, "action": "Phone Call", "result": result,
                "from": {"phoneNumber": from_number, "name": "Caller"}, "to": {"phoneNumber": to_number},
            }
            if recording is not None:
                recording_id = str(self._next_id())
                path = f"/restapi/v1.0/account/~/recording/{recording_id}/content"
                self.content[path] = (recording, "audio/mpeg")
                record["recording"] = {"id": recording_id, "type": "Automatic", "contentUri": self.url + path,
                                       "uri": f"{self.url}/restapi/v1.0/account/~/recording/{recording_id}"}
            self.calls.append(record)
            return record

    @staticmethod
    def public(record) -> dict:
        return {k: v for k, v in record.items() if not k.startswith("_")}

    def notification(self, record, *, subscription_id="sub-1") -> dict:
        """The webhook body RingCentral posts for an instant SMS event."""
        body = {k: v for k, v in self.public(record).items() if k not in ("uri", "readStatus", "availability")}
        body["id"] = str(record["id"])
        return {"uuid": secrets.token_hex(8), "event": f"{EXT}/message-store/instant?type=SMS",
                "timestamp": iso(datetime.now(timezone.utc)), "subscriptionId": subscription_id, "body": body}

    # --- HTTP ---------------------------------------------------------------------

    def _error(self, handler, status, code, message, headers=None):
        return self.answer(handler, status, {"errorCode": code, "message": message,
                                              "errors": [{"errorCode": code, "message": message}]}, headers)

    def handle(self, handler, method):
        url = urlsplit(handler.path)
        path, query = url.path, parse_qs(url.query)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length", 0) or 0))
        with self._lock:
            self.requests.append((method, path))
            failure = None
            for index, (status, retry_after, contains) in enumerate(self._failures):
                if contains in path:
                    failure = self._failures.pop(index)
                    break
        if failure is not None:
            status, retry_after, _ = failure
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            if status == 429:
                return self._error(handler, 429, "CMN-301", "Request rate exceeded", headers)
            return self._error(handler, status, "CMN-211", "Service temporarily unavailable", headers)
        if path == "/restapi/oauth/token" and method == "POST":
            return self._token(handler, raw)
        if not self._authorised(handler):
            return self._error(handler, 401, "TokenInvalid", "Access token is invalid or expired")
        routes = [
            ("POST", f"{EXT}/sms", self._send_sms),
            ("GET", f"{EXT}/message-sync", self._message_sync),
            ("GET", f"{EXT}/message-store", self._message_store),
            ("GET", f"{EXT}/call-log", self._call_log),
            ("POST", f"{EXT}/ring-out", self._ring_out),
            ("POST", "/restapi/v1.0/subscription", self._subscribe),
        ]
        for verb, route, action in routes:
            if method == verb and path == route:
                return action(handler, query, raw)
        if method == "PUT" and path.startswith("/restapi/v1.0/subscription/"):
            return self._renew(handler, path.rsplit("/", 1)[1], raw)
        if method == "GET" and path in self.content:
            data, content_type = self.content[path]
            return self.answer(handler, 200, raw=data, content_type=content_type)
        return self._error(handler, 404, "CMN-102", f"Resource for parameter [{path}] is not found")

    def _token(self, handler, raw):
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if handler.headers.get("Authorization") != f"Basic {expected}":
            return self.answer(handler, 401, {"error": "invalid_client", "errors": [
                {"errorCode": "OAU-123", "message": "Invalid client: " + self.client_id}],
                "error_description": "Invalid client"})
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if form.get("grant_type") != JWT_GRANT or form.get("assertion") != self.jwt:
            return self.answer(handler, 400, {"error": "invalid_grant", "error_description": "Invalid assertion",
                                               "errors": [{"errorCode": "OAU-140", "message": "Invalid assertion"}]})
        token = "U1BCMDFUMDRKV1MwMXxhY2Nlc3M" + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = time.time() + self.token_ttl
            self.token_grants += 1
        return self.answer(handler, 200, {"access_token": token, "token_type": "bearer",
                                           "expires_in": self.token_ttl, "scope": "SMS ReadMessages ReadCallLog",
                                           "owner_id": "1000", "endpoint_id": "ep-1"})

    def _authorised(self, handler) -> bool:
        header = handler.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        with self._lock:
            return self.tokens.get(header[7:], 0) > time.time()

    def _json(self, handler, raw):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error(handler, 400, "CMN-101", "Parameter [body] value is invalid")
            return None
        return body if isinstance(body, dict) else None

    def _send_sms(self, handler, query, raw):
        body = self._json(handler, raw)
        if body is None:
            return
        text = body.get("text")
        to = body.get("to")
        sender = (body.get("from") or {}).get("phoneNumber")
        if not sender or not isinstance(to, list) or not to or not isinstance(text, str):
            return self._error(handler, 400, "CMN-101", "Parameter [to] value is invalid")
        if utf16_units(text) > 1000:
            return self._error(handler, 400, "MSG-333", "The message text is too long")
        record = self.add_message(from_number=sender, to_number=to[0].get("phoneNumber"), text=text,
                                  direction="Outbound", status="Queued")
        with self._lock:
            self.sent.append(body)
        return self.answer(handler, 200, self.public(record))

    def _message_sync(self, handler, query, raw):
        sync_type = query.get("syncType", ["FSync"])[0]
        with self._lock:
            if sync_type == "ISync":
                token = query.get("syncToken", [""])[0]
                try:
                    since_seq = int(base64.urlsafe_b64decode(token.encode()).decode().split(":")[1])
                except (ValueError, IndexError, UnicodeDecodeError):
                    return self._error(handler, 400, "MSG-301", "Invalid sync token")
                records = [r for r in self.messages if r["_seq"] > since_seq]
            else:
                date_from = parse_iso(query["dateFrom"][0]) if "dateFrom" in query else (
                    datetime.now(timezone.utc) - timedelta(hours=24))
                records = [r for r in self.messages if parse_iso(r["creationTime"]) >= date_from]
            records = sorted(records, key=lambda r: r["_seq"])
            token = base64.urlsafe_b64encode(f"sync:{self._seq}".encode()).decode()
            public = [self.public(r) for r in reversed(records)]  # newest first, as RingCentral lists them
        return self.answer(handler, 200, {"records": public, "syncInfo": {
            "syncType": sync_type, "syncToken": token, "syncTime": iso(datetime.now(timezone.utc)),
            "olderRecordsExist": False}})

    def _paged(self, handler, query, items, path):
        page = max(1, int(query.get("page", ["1"])[0]))
        per_page = max(1, min(1000, int(query.get("perPage", ["100"])[0])))
        total = len(items)
        pages = max(1, -(-total // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        navigation = {"firstPage": {"uri": f"{self.url}{path}?page=1&perPage={per_page}"}}
        if page < pages:
            navigation["nextPage"] = {"uri": f"{self.url}{path}?page={page + 1}&perPage={per_page}"}
        return self.answer(handler, 200, {"uri": f"{self.url}{path}?page={page}", "records": chunk,
                                           "paging": {"page": page, "totalPages": pages, "perPage": per_page,
                                                      "totalElements": total},
                                           "navigation": navigation})

    def _message_store(self, handler, query, raw):
        date_from = parse_iso(query["dateFrom"][0]) if "dateFrom" in query else datetime.min.replace(
            tzinfo=timezone.utc)
        with self._lock:
            records = [self.public(r) for r in sorted(self.messages, key=lambda r: r["creationTime"], reverse=True)
                       if parse_iso(r["creationTime"]) >= date_from]
        return self._paged(handler, query, records, f"{EXT}/message-store")

    def _call_log(self, handler, query, raw):
        date_from = parse_iso(query["dateFrom"][0]) if "dateFrom" in query else (
            datetime.now(timezone.utc) - timedelta(hours=24))
        detailed = query.get("view", ["Simple"])[0] == "Detailed"
        with self._lock:
            records = []
            for record in sorted(self.calls, key=lambda r: r["startTime"], reverse=True):
                if parse_iso(record["startTime"]) < date_from:
                    continue
                public = dict(record)
                if detailed:
                    public["legs"] = [{"startTime": record["startTime"], "direction": record["direction"],
                                       "result": record["result"], "legType": "Accept"}]
                records.append(public)
        return self._paged(handler, query, records, f"{EXT}/call-log")

    def _ring_out(self, handler, query, raw):
        body = self._json(handler, raw)
        if body is None:
            return
        if not (body.get("from") or {}).get("phoneNumber") or not (body.get("to") or {}).get("phoneNumber"):
            return self._error(handler, 400, "CMN-101", "Parameter [from] value is invalid")
        ring_id = str(self._next_id())
        with self._lock:
            self.ringouts.append(body)
        return self.answer(handler, 200, {
            "uri": f"{self.url}{EXT}/ring-out/{ring_id}", "id": ring_id,
            "status": {"callStatus": "InProgress", "callerStatus": "InProgress", "calleeStatus": "InProgress"}})

    def _subscribe(self, handler, query, raw):
        body = self._json(handler, raw)
        if body is None:
            return
        mode = body.get("deliveryMode") or {}
        address = mode.get("address", "")
        if mode.get("transportType") != "WebHook" or not address or not body.get("eventFilters"):
            return self._error(handler, 400, "SUB-406", "Parameter [deliveryMode] value is invalid")
        validation = secrets.token_hex(16)
        answer = self._validate_webhook(address, validation)
        with self._lock:
            self.validation_answers.append(answer)
        if answer != (200, validation):
            return self._error(handler, 400, "SUB-521", "Validation-Token header is missing or invalid")
        return self.answer(handler, 200, self._save_subscription(str(self._next_id()), body))

    def _renew(self, handler, subscription_id, raw):
        with self._lock:
            known = subscription_id in self.subscriptions
        if not known:
            return self._error(handler, 404, "SUB-504", "Subscription not found")
        body = self._json(handler, raw)
        if body is None:
            return
        merged = {**self.subscriptions[subscription_id]["_request"], **{k: v for k, v in body.items() if v}}
        return self.answer(handler, 200, self._save_subscription(subscription_id, merged))

    def _save_subscription(self, subscription_id, body):
        expires_in = int(body.get("expiresIn") or 604800)
        mode = body["deliveryMode"]
        record = {
            "uri": f"{self.url}/restapi/v1.0/subscription/{subscription_id}", "id": subscription_id,
            "creationTime": iso(datetime.now(timezone.utc)), "status": "Active",
            "eventFilters": body["eventFilters"], "expiresIn": expires_in,
            "expirationTime": iso(datetime.now(timezone.utc) + timedelta(seconds=expires_in)),
            "deliveryMode": {"transportType": "WebHook", "address": mode["address"],
                             "verificationToken": mode.get("verificationToken", "")},
        }
        with self._lock:
            self.subscriptions[subscription_id] = {**record, "_request": body}
        return record

    @staticmethod
    def _validate_webhook(address, token):
        """(status, echoed Validation-Token) of our webhook, or (None, error) when it cannot be reached."""
        request = urllib.request.Request(address, data=b"", method="POST", headers={"Validation-Token": token})
        try:
            with urllib.request.urlopen(request, timeout=3) as response:
                return response.status, response.headers.get("Validation-Token")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Validation-Token")
        except OSError as exc:
            return None, str(exc)
