"""Staff screens: the inbox list and the customer thread (templates + htmx).

Thin like the API: read through ``selectors``/``access_conversation``, write
through ``services``, translate refusals into a message next to the control
that caused them. Every action works as a plain form post too (redirect after
success); htmx requests get the fragment to swap instead.
"""
import functools
import json
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import FileResponse, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.template.backends.utils import csrf_input
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe

from crm import services as crm_services
from myhibachi.ids import BadId, parse_id
from myhibachi.roles import AGENT, MANAGER, is_manager, is_staff_member

from . import assignees, channels, search, selectors, services
from . import attachments as stored_files
from .rows import load as load_rows
from .templatetags.inbox_ui import history_lines
from .access import access_conversation, access_reply
from .tagging import tag_name
from .models import CannedResponse, Conversation, Message

Status = Conversation.Status
PAGE_SIZE = 25
THREAD_SIZE = 50  # newest items on the page; "Show older messages" loads the rest
LIVE_THREAD_SIZE = 30
MAX_LIVE_IDS = 100
TABS = [("open", "Open"), ("pending", "Pending"), ("resolved", "Resolved"), ("closed", "Closed"), ("all", "All")]


def staff_screen(view):
    """Anonymous -> login page; logged in but not staff -> 403. Times are shown
    in the business's time zone, and pages carry a strict Content-Security-Policy
    (no inline script), a second wall behind the sanitising of customer html."""

    @login_required
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_staff_member(request.user):
            raise PermissionDenied("Your account is not in the Agent or Manager group, so the inbox is closed to it.")
        with timezone.override(ZoneInfo(settings.BUSINESS_TIME_ZONE)):
            response = view(request, *args, **kwargs)
        response.setdefault("Content-Security-Policy", content_security_policy(request))
        return response

    return wrapper


def content_security_policy(request) -> str:
    # img-src: no remote hosts. Customer email's remote images (tracking pixels)
    # load only on "Show images", through the same-origin inbox.image_proxy.
    host = request.get_host()
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' ws://{host} wss://{host}; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'; object-src 'none'")


def is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


# --- the inbox list ------------------------------------------------------------

class Filters:
    """The list's filters, read leniently from the query string: an unknown
    value is dropped (and reported) instead of failing the page."""

    def __init__(self, params, user):
        self.problems = []
        self.q = " ".join(params.get("q", "").split())[:200]
        # A search covers every status unless a tab was chosen (the tabs then count its hits).
        status = params.get("status", "all" if self.q else "open")
        self.status = status if status in dict(TABS) else "open"
        channel = params.get("channel", "")
        self.channel = channel if channel in dict(channels.choices()) else ""
        self.assignee, self.assignee_value = params.get("assignee", ""), None
        try:
            self.assignee_value = assignees.filter_value(self.assignee) if self.assignee else None
        except ValidationError:
            self.assignee = ""
            self.problems.append("That assignee filter was not understood and is ignored.")
        self.tag = ""
        if params.get("tag"):
            try:
                self.tag = tag_name(params["tag"])
            except ValidationError:
                self.problems.append("That tag filter was not understood and is ignored.")
        self.user = user

    def queryset(self, *, with_status=True):
        return selectors.filter_conversations(
            selectors.conversations_for_list(), user=self.user, status=self.status if with_status else None,
            channel=self.channel or None, assignee=self.assignee_value, tag=self.tag or None,
        )

    @property
    def narrowed(self) -> bool:
        """A filter beside the status is set (the counts are then the filtered ones)."""
        return bool(self.channel or self.assignee or self.tag)

    def counts(self, search_ids=None) -> dict:
        """Per status, what the list would show on each tab: the cached totals when nothing narrows it."""
        if search_ids is None and not self.narrowed:
            return selectors.status_counts()
        mine = self.user.pk if self.assignee == "me" else ""
        return selectors.list_counts(self.queryset(with_status=False), search_ids=search_ids,
                                     cache_key=f"{self.channel}|{self.assignee}|{mine}|{self.tag}")

    def query(self, **changes) -> str:
        from django.utils.http import urlencode

        values = {"status": self.status, "channel": self.channel, "assignee": self.assignee, "tag": self.tag,
                  "q": self.q}
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v})


def _is_id(raw) -> bool:
    try:
        parse_id(raw)
    except BadId:
        return False
    return True


def _page(filters, cursor, search_ids=None):
    qs = filters.queryset()
    try:
        if filters.q:
            return selectors.page_of_search(qs, filters.q, size=PAGE_SIZE, cursor=cursor, ids=search_ids,
                                            with_hits=True)
        return selectors.page_by_activity(qs, size=PAGE_SIZE, cursor=cursor)
    except selectors.BadCursor:
        filters.problems.append("That page link has expired; showing the first page.")
        return _page(filters, None, search_ids)


def staff_members():
    return (get_user_model().objects.filter(is_active=True)
            .filter(Q(groups__name__in=[AGENT, MANAGER]) | Q(is_superuser=True))
            .distinct().order_by("first_name", "username").only("id", "username", "first_name", "last_name"))


def render_rows(request, rows, *, filters=None, next_cursor=None, next_url=None, row_error="") -> str:
    """Inbox rows as html (a Jinja2 template, see myhibachi/jinja2.py), and
    the link to the next page when there is one."""
    # Autoescaped by the template; Django's Jinja2 backend returns a plain str.
    return mark_safe(render_to_string("inbox/_rows.html", {
        "rows": rows, "now": timezone.now(), "next_url": next_url, "row_error": row_error,
        "next_cursor": next_cursor, "query": filters.query() if filters else "", "list_url": reverse("inbox:list"),
        # Made once: the backend's own csrf_input masks a fresh token (random bytes) every time it is shown.
        "csrf_field": csrf_input(request),
    }, request=request, using="jinja2"))


@staff_screen
def inbox_page(request):
    filters = Filters(request.GET, request.user)
    latest_event = selectors.latest_event_id()  # read before the rows: catch-up starts here
    search_ids = selectors.search_conversation_ids(filters.q) if filters.q else None
    page = _page(filters, request.GET.get("cursor") or None, search_ids)
    rows_html = render_rows(request, page.rows, filters=filters, next_cursor=page.next_cursor,
                            next_url=f"{reverse('inbox:list')}?{filters.query()}")
    target = request.headers.get("HX-Target") if is_htmx(request) else None
    if target == "more-rows":  # the next page, appended by infinite scroll
        return HttpResponse(rows_html)
    counts = filters.counts(search_ids)
    context = {"filters": filters, "rows": page.rows, "rows_html": rows_html, "counts": counts,
               "heading": _heading(filters, counts), "count_cap": selectors.COUNT_CAP,
               "search_all_query": filters.query(status="all"),
               "clear_query": filters.query(channel="", assignee="", tag="", q="",
                                            status="open" if filters.q else filters.status),
               "tabs": [(key, label, counts.get(key, 0), filters.query(status=key)) for key, label in TABS]}
    if target == "inbox-body":  # a tab or a filter changed
        return render(request, "inbox/_inbox_body.html", {**context, "swap_heading": True})
    context.update({"latest_event": latest_event, "staff": staff_members(), "tags": selectors.all_tag_names(),
                    "channels": channels.choices(), "is_manager": is_manager(request.user)})
    return render(request, "inbox/inbox.html", context)


def _heading(filters, counts) -> dict:
    """The list's heading: how many conversations the current tab holds under the filters
    and search ("Inbox (3 Open)"), and the filters in words ("on SMS · tagged vip")."""
    parts = []
    if filters.channel:
        parts.append(f"on {dict(channels.choices())[filters.channel]}")
    if filters.assignee == "me":
        parts.append("assigned to me")
    elif filters.assignee == "unassigned":
        parts.append("unassigned")
    elif filters.assignee:
        person = get_user_model().objects.filter(pk=filters.assignee_value).first()
        parts.append(f"assigned to {(person.get_full_name() or person.get_username()) if person else 'nobody known'}")
    if filters.tag:
        parts.append(f"tagged {filters.tag}")
    if filters.q:
        parts.append(f"matching “{filters.q}”")
    return {"count": counts.get(filters.status, 0), "label": dict(TABS)[filters.status], "filters": parts}


@staff_screen
def inbox_rows(request):
    """Rows for the given conversation ids that match the filters (live refresh):
    the page replaces or inserts those returned and drops the others."""
    filters = Filters(request.GET, request.user)
    # Ids the page sent; anything that is not one is dropped (the page has no row for it).
    ids = [int(x) for x in request.GET.get("ids", "").split(",") if _is_id(x)][:MAX_LIVE_IDS]
    qs = filters.queryset().filter(pk__in=ids).order_by("-last_activity_at", "-id")
    found = load_rows(qs) if ids else []
    if filters.q and found:  # a search's rows keep saying why they matched
        hits = search.hits_for([row.id for row in found], filters.q)
        for row in found:
            row.hit = hits.get(row.id)
    response = HttpResponse(render_rows(request, found))
    if not filters.q:  # a search's counts stay those of the search as run (re-running it per event costs too much)
        response["X-Inbox-Counts"] = json.dumps(filters.counts())
    return response


# --- one thread ------------------------------------------------------------------

def _thread_context(request, conversation, *, size=THREAD_SIZE, before=None, staff=None):
    """The thread's items (messages, notes, and the status and assignment changes among
    them), the customer's conversations (the sections of older ones are marked with their
    own status) and the staff (names in the timeline, the assignee list)."""
    conversations = selectors.customer_conversations(conversation.customer_id)
    items, older = selectors.customer_thread(conversation.customer_id, size=size, before=before)
    items = selectors.with_timeline(items, conversation_ids=[c["id"] for c in conversations], older=older,
                                    before=before)
    return {"conversation": conversation, "customer": conversation.customer, "items": items, "older": older,
            "now": timezone.now(), "thread_conversations": {c["id"]: c for c in conversations},
            "conversation_ids": [c["id"] for c in conversations],
            "staff": list(staff_members()) if staff is None else staff}


@staff_screen
def thread_page(request, pk):
    conversation = access_conversation(request.user, pk)
    return _thread_response(request, conversation, mark_read=True)


def _thread_response(request, conversation, *, composer=None, header_error=None, status=200, mark_read=False,
                     extra=None):
    selectors.with_identities(conversation, tags=True)
    latest_event = selectors.latest_event_id()
    before = request.GET.get("before") or None
    try:
        context = _thread_context(request, conversation, before=before)
    except selectors.BadCursor:
        before = None
        context = _thread_context(request, conversation)
    if mark_read:
        _mark_seen_read(request, conversation, context)
    customer = conversation.customer
    if composer is None:
        composer = _composer(conversation, identities=customer.identity_list,
                             last_inbound=None if before else _last_inbound_channel(context["items"]))
    context.update({
        "profile": selectors.customer_profile(customer, conversation_id=conversation.pk),
        "identities": customer.identity_list,
        "canned": _canned(),
        "composer": composer,
        "header_error": header_error,
        "latest_event": latest_event,
        "is_manager": is_manager(request.user),
        "all_tags": selectors.all_tag_names(),
        **(extra or {}),
        "next_after_resolve": settings.INBOX_NEXT_AFTER_RESOLVE,
    })
    return render(request, "inbox/thread.html", context, status=status)


def _mark_seen_read(request, conversation, context):
    """Read state follows what the agent saw: the conversation opened, and any other
    conversation of the customer with an item on this page (the thread shows them all)."""
    services.mark_read(conversation=conversation, by=request.user)
    shown = {item.row["conversation_id"] for item in context["items"]}
    for pk, info in context["thread_conversations"].items():
        if pk != conversation.pk and info["is_unread"] and pk in shown:
            services.mark_read(conversation=selectors.conversation_detail(pk), by=request.user)
            info["is_unread"] = False


def _canned():
    return CannedResponse.objects.filter(active=True).only("id", "title", "shortcut")


def _last_inbound_channel(newest_items):
    """The channel of the customer's newest inbound message, read off the newest page
    when it can be (saves channels.reply_options() its query): every newer item is on
    that page. None when the page has none; reply_options then looks it up."""
    for item in reversed(newest_items):
        row = item.row
        if item.kind == "message" and row["direction"] == "inbound":
            return row["channel"]
    return None


@staff_screen
def thread_live(request, pk):
    """The conversation header and the newest thread items, for live merging."""
    conversation = selectors.tag_names(access_conversation(request.user, pk))
    context = _thread_context(request, conversation, size=LIVE_THREAD_SIZE)
    return render(request, "inbox/_thread_live.html", context)


@staff_screen
def thread_older(request, pk):
    conversation = access_conversation(request.user, pk)
    try:
        context = _thread_context(request, conversation, before=request.GET.get("before") or None)
    except selectors.BadCursor as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    return render(request, "inbox/_items.html", context)


def _composer(conversation, *, mode="reply", text="", channel=None, error=None, notice=None,
              identities=None, last_inbound=None):
    """The reply box: the channels that reach the customer now (channels.reply_options), the
    customer's last channel picked, and each missing channel with the reason. A channel the
    customer opted out of (texted STOP) is still offered, with its refusal shown before anyone
    writes; sending on it is refused with the same words (services.reply reads the same rule)."""
    options = channels.reply_options(conversation.customer, last_inbound=last_inbound, identities=identities)
    offered = options.offered()
    if channel not in [spec.name for spec in offered]:
        channel = options.default
    refusals = {name: options.reason(name) for name in options.opted_out}
    # Per channel: its length limit (SMS: UTF-16 units, counted live by static/js/sms_counter.js) and why
    # a reply on it would be refused.
    return {"mode": mode, "text": text, "channel": channel, "error": error, "notice": notice,
            "email_channels": [spec.name for spec in offered if spec.has_subject],
            "channels": [(spec.name, spec.label) for spec in offered],
            "options": [(spec.name, spec.label, spec.max_reply_units, refusals.get(spec.name, ""))
                        for spec in offered],
            "refusal": refusals.get(channel, ""),
            "missing": [(spec.label, why) for spec, why in options.missing if spec.name not in options.opted_out]}


def _post_only(view):
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return view(request, *args, **kwargs)

    return wrapper


def refusal(exc) -> tuple[str, int]:
    """A refused action as (the message shown next to the control, the HTTP status): the screens'
    one mapping. Service refusals carry their status (inbox/errors.py); invalid input is 422."""
    if isinstance(exc, services.InboxError):
        return exc.message, exc.status
    return " ".join(exc.messages), 422


def _seen_through(form):
    """The reply box's "newest message I had seen" (static/js/presence.js keeps it), or None to send
    without the check: "Send anyway", or a value that is no id (the check is a help, not a lock)."""
    if form.get("send_anyway"):
        return None
    try:
        return parse_id(form.get("seen_through", ""), minimum=0)
    except BadId:
        return None


@staff_screen
@_post_only
def send(request, pk):
    """The reply box: a reply to the customer, or an internal note (mode=note)."""
    conversation = access_conversation(request.user, pk)
    mode = "note" if request.POST.get("mode") == "note" else "reply"
    text = request.POST.get("text", "")
    channel = request.POST.get("channel") or None  # services.reply refuses one that cannot send, saying why
    status = 200
    try:
        if mode == "note":
            unknown = [] if request.POST.get("mentions_checked") else _unknown_mentions(text)
            if unknown:
                return _mentions_flagged(request, conversation, text, unknown)
            services.add_note(conversation=conversation, author=request.user, body=text)
            notice = "Note added (staff only)."
        else:
            services.reply(conversation=conversation, author=request.user, text=text, channel=channel,
                           seen_through=_seen_through(request.POST),
                           cc=request.POST.get("cc", "")[:2000], attachments=request.FILES.getlist("attachments"))
            notice = "Reply queued for sending."
        composer = _composer(conversation, mode=mode, channel=channel, notice=notice)
    except (services.InboxError, ValidationError) as exc:
        error, status = refusal(exc)
        composer = _composer(conversation, mode=mode, text=text, channel=channel, error=error)
        composer["stale"] = getattr(exc, "new_messages", None)  # StaleReply: shown above the box
        composer["cc"] = request.POST.get("cc", "")[:2000]
    if not is_htmx(request):
        if status == 200:
            return redirect(reverse("inbox:thread", args=[conversation.pk]) + "#thread-end")
        return _thread_response(request, conversation, composer=composer, status=status)
    response = render(request, "inbox/_composer.html",
                      {"conversation": conversation, "composer": composer,
                       "canned": _canned()},
                      status=status)
    if status == 200:
        response["HX-Trigger"] = json.dumps({"inbox:thread-changed": {"conversation": conversation.pk}})
    return response


# --- my email signature -------------------------------------------------------------

@staff_screen
def signature(request):
    """Each staff member's own email signature (myhibachi.models.StaffProfile)."""
    from myhibachi.models import MAX_SIGNATURE_CHARS, StaffProfile

    profile, _ = StaffProfile.objects.get_or_create(user=request.user)
    error, saved, status = "", False, 200
    if request.method == "POST":
        text = request.POST.get("signature", "").strip()
        if len(text) > MAX_SIGNATURE_CHARS:
            error, status = f"A signature can be at most {MAX_SIGNATURE_CHARS:,} characters.", 422
        else:
            profile.signature = text
            profile.save(update_fields=["signature"])
            saved = True
    return render(request, "inbox/signature.html", {"profile": profile, "error": error, "saved": saved,
                                                    "max_chars": MAX_SIGNATURE_CHARS}, status=status)


# --- attachments of a message (received or sent) ------------------------------------

@staff_screen
def attachment(request, pk, message_pk, index=None):
    """One stored file of a message, whatever its channel: attachment `index` (email, MMS) or,
    without an index, the call's recording. Only through the conversation the message belongs
    to. It is the customer's file, and the page's origin must not run it: the image types the
    thread shows open inline with their type, recordings keep theirs for the thread's <audio>,
    everything else is an application/octet-stream download; all with nosniff and a sandbox."""
    conversation = access_conversation(request.user, pk)
    message = Message.objects.filter(pk=message_pk, conversation_id=conversation.pk).only("metadata").first()
    meta = stored_files.entry(message.metadata, index) if message else None
    handle = stored_files.open_stored(meta) if meta else None
    if handle is None:
        return HttpResponse("That file is not stored (or not in this conversation).", status=404,
                            content_type="text/plain")
    content_type = str(meta.get("content_type") or "").lower()
    image = stored_files.is_inline_image(meta)
    if not image and content_type not in stored_files.AUDIO_TYPES:
        content_type = "application/octet-stream"
    response = FileResponse(handle, content_type=content_type, as_attachment=not image,
                            filename=stored_files.download_name(meta))
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


# --- a failed reply: Retry, or Send by email instead ---------------------------------

def _failed_reply_action(request, pk, message_pk, act):
    conversation = access_conversation(request.user, pk)
    message = access_reply(conversation, message_pk)
    error, status = "", 200
    try:
        act(message)
    except (services.InboxError, ValidationError) as exc:
        error, status = refusal(exc)
    if not is_htmx(request):
        if error:
            return HttpResponse(error, status=status, content_type="text/plain")
        return redirect(reverse("inbox:thread", args=[conversation.pk]) + f"#m-{message.pk}")
    response = HttpResponse(f'<p class="error" role="alert">{escape(error)}</p>' if error else "", status=status)
    if not error:
        response["HX-Trigger"] = json.dumps({"inbox:thread-changed": {"conversation": conversation.pk}})
    return response


@staff_screen
@_post_only
def retry_reply(request, pk, message_pk):
    attempt = request.POST.get("attempt")
    attempt = int(attempt) if attempt and attempt.isdigit() and len(attempt) < 6 else None
    return _failed_reply_action(request, pk, message_pk,
                                lambda message: services.retry_reply(message=message, by=request.user, attempt=attempt))


@staff_screen
@_post_only
def email_instead(request, pk, message_pk):
    return _failed_reply_action(request, pk, message_pk,
                                lambda message: services.send_by_email_instead(message=message, by=request.user))


def _after_action(request, conversation, error, status):
    """Answer a status or assignment change from the list (a row) or the thread (its header)."""
    where = request.POST.get("from")
    if not is_htmx(request):
        if error:
            return _thread_response(request, access_conversation(request.user, conversation.pk),
                                    header_error=error, status=status)
        target = request.POST.get("next", "")
        if where == "list" and url_has_allowed_host_and_scheme(target, {request.get_host()}):
            return redirect(target)
        return redirect("inbox:thread", conversation.pk)
    if where == "list":
        return HttpResponse(render_rows(request, [selectors.list_row(conversation.pk)], row_error=error or ""),
                            status=status)
    conversation = selectors.tag_names(access_conversation(request.user, conversation.pk))
    return render(request, "inbox/_header.html", {"conversation": conversation, "staff": staff_members(),
                                                  "header_error": error}, status=status)


@staff_screen
def thread_history(request, pk):
    """The conversation's history, for the header's History list when it is opened (or as a page)."""
    conversation = access_conversation(request.user, pk)
    staff = list(staff_members())  # also names the assignees
    lines = history_lines(selectors.conversation_history(conversation.pk), staff)
    return render(request, "inbox/_history.html", {"conversation": conversation, "history": lines})


@staff_screen
@_post_only
def change_status(request, pk):
    conversation = access_conversation(request.user, pk)
    error, status = None, 200
    try:
        services.set_status(conversation=conversation, status=request.POST.get("status", ""), by=request.user)
    except (services.InboxError, ValidationError) as exc:
        error, status = refusal(exc)
    return _after_action(request, conversation, error, status)


@staff_screen
@_post_only
def change_assignee(request, pk):
    conversation = access_conversation(request.user, pk)
    raw = request.POST.get("assignee", "")
    error, status = None, 200
    try:
        services.assign(conversation=conversation, assignee=assignees.assignee_for(raw, user=request.user),
                        by=request.user)
    except (services.InboxError, ValidationError) as exc:
        error, status = refusal(exc)
    return _after_action(request, conversation, error, status)


@staff_screen
@_post_only
def add_customer_note(request, pk):
    """The profile panel's "Add a note about <customer>" (staff only, not tied to this conversation)."""
    conversation = access_conversation(request.user, pk)
    customer = conversation.customer
    body = request.POST.get("body", "")
    error, status = None, 200
    try:
        crm_services.add_customer_note(customer=customer, author=request.user, body=body)
        body = ""
    except ValidationError as exc:
        error, status = refusal(exc)
    if not is_htmx(request):
        if status == 200:
            return redirect(reverse("inbox:thread", args=[conversation.pk]) + "#customer-notes")
        return _thread_response(request, conversation, status=status,
                                extra={"note_error": error, "note_body": body})
    profile = selectors.customer_profile(customer, conversation_id=conversation.pk)
    return render(request, "inbox/_customer_notes.html",
                  {"conversation": conversation, "customer": customer, "profile": profile,
                   "note_error": error, "note_body": body}, status=status)


def change_tags(request, pk):
    """The thread header's tags: add= a tag (made if new) or remove= one."""
    conversation = access_conversation(request.user, pk)
    error, status = None, 200
    try:
        if "remove" in request.POST:
            services.remove_tag(conversation=conversation, name=request.POST["remove"], by=request.user)
        else:
            services.add_tag(conversation=conversation, name=request.POST.get("add", ""), by=request.user)
    except (services.InboxError, ValidationError) as exc:
        error, status = refusal(exc)
    if not is_htmx(request):
        if error:
            return _thread_response(request, access_conversation(request.user, pk), header_error=error, status=status)
        return redirect("inbox:thread", conversation.pk)
    return render(request, "inbox/_tags.html", {"conversation": selectors.tag_names(conversation),
                                                "tags_error": error}, status=status)


def _unknown_mentions(text) -> list[str]:
    return selectors.unknown_mentions({name.rstrip(".") for name in services.MENTION.findall(text or "")})


def _mentions_flagged(request, conversation, text, unknown):
    """The note is not saved yet: its @names that are nobody on the staff are named, and
    sending again as it is (or after fixing them) saves it."""
    names = ", ".join(f"@{name}" for name in unknown)
    composer = _composer(conversation, mode="note", text=text,
                         error=f"No staff member is called {names}: nobody would be told. "
                               "Fix the name, or add the note again to save it as it is.")
    composer["unknown_mentions"] = unknown
    if not is_htmx(request):
        return _thread_response(request, conversation, composer=composer, status=422)
    return render(request, "inbox/_composer.html", {"conversation": conversation, "composer": composer,
                                                    "canned": _canned()}, status=422)
