"""The staff screens through HTTP: what a person sees and what their clicks do."""
import json
import re

import pytest
from django.utils import timezone

from inbox import services
from inbox.models import CannedResponse, Conversation, Message, Note
from tests.factories import make_customer, make_user

HX = {"HTTP_HX_REQUEST": "true"}


def text_of(response):
    return response.content.decode()


# --- who may see the screens ----------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/inbox/", "/inbox/1/", "/inbox/rows?ids=1", "/inbox/1/live"])
def test_anonymous_people_are_sent_to_log_in(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("path", ["/", "/inbox/", "/inbox/1/", "/inbox/rows?ids=1"])
def test_logged_in_non_staff_get_403_with_a_reason(client, db, path):
    client.force_login(make_user("visitor", role=None))
    response = client.get(path)
    assert response.status_code == 403
    assert "Agent or Manager" in text_of(response)


def test_non_staff_cannot_act_either(client, receive):
    conversation = receive().message.conversation
    client.force_login(make_user("visitor", role=None))
    assert client.post(f"/inbox/{conversation.pk}/status", {"status": "resolved"}).status_code == 403
    assert client.post(f"/inbox/{conversation.pk}/send", {"text": "hi"}).status_code == 403
    assert Conversation.objects.get().status == "open"


# --- log in ------------------------------------------------------------------------

def test_wrong_password_says_so(client, agent):
    response = client.post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "username and password do not match" in text_of(response)
    assert 'value="alice"' in text_of(response)  # the username stays typed


@pytest.fixture
def private_cache(settings):
    """Failure counts in this process only: a shared Redis may be flushed by another test run."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "login-limit-tests"}}


def test_repeated_failures_are_rate_limited_then_cleared_by_time(client, agent, settings, private_cache):
    from django.core.cache import cache

    settings.LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        assert client.post("/login/", {"username": "alice", "password": "nope"}).status_code == 200
    # Even the right password is refused while the limit holds.
    response = client.post("/login/", {"username": "Alice", "password": "pw-for-tests-1"})
    assert response.status_code == 429
    assert "Too many failed log-in attempts" in text_of(response)
    assert int(response["Retry-After"]) > 0
    # Another person from the same address is not locked out.
    make_user("bob")
    assert client.post("/login/", {"username": "bob", "password": "pw-for-tests-1"}).status_code == 302
    client.logout()
    cache.clear()  # the window passed
    assert client.post("/login/", {"username": "alice", "password": "pw-for-tests-1"}).status_code == 302


def test_a_successful_log_in_resets_the_count(client, agent, settings, private_cache):
    settings.LOGIN_MAX_FAILURES = 3
    for _ in range(2):
        client.post("/login/", {"username": "alice", "password": "nope"})
    assert client.post("/login/", {"username": "alice", "password": "pw-for-tests-1"}).status_code == 302
    client.logout()
    for _ in range(2):
        client.post("/login/", {"username": "alice", "password": "nope"})
    assert client.post("/login/", {"username": "alice", "password": "pw-for-tests-1"}).status_code == 302


# --- the inbox list ----------------------------------------------------------------

def test_inbox_shows_the_open_count_rows_and_unread_state(agent_client, receive, agent):
    first = receive("john@example.com", text="Hi, we want a party for 12", sender_name="John Doe")
    receive("+14155550111", channel="sms", text="Are you free Sunday?")
    done = receive("old@example.com", text="thanks!").message.conversation
    services.set_status(conversation=done, status="resolved")
    services.mark_read(conversation=first.message.conversation, by=agent)
    page = text_of(agent_client.get("/"))
    assert "Inbox (2 Open)" in page
    assert re.search(r'Resolved <span class="count" data-count="resolved"[^>]*>1</span>', page)
    assert "John Doe" in page and "john@example.com" in page and "+14155550111" in page
    assert "Hi, we want a party for 12" in page and "Are you free Sunday?" in page
    assert '<span class="channel-label">SMS</span>' in page
    assert "just now" in page
    assert "thanks!" not in page  # resolved: not on the open tab
    rows = re.findall(r'<li class="row( unread)?" id="conv-(\d+)"', page)
    assert rows == [(" unread", str(Conversation.objects.get(customer__identities__value="+14155550111").pk)),
                    ("", str(first.message.conversation_id))]


def test_tabs_filters_and_search(agent_client, receive, agent, manager):
    email = receive("a@example.com", text="wedding in june").message.conversation
    sms = receive("+14155550112", channel="sms", text="birthday party").message.conversation
    services.assign(conversation=sms, assignee=agent)
    services.set_status(conversation=email, status="pending")

    def ids(query):
        return [int(x) for x in re.findall(r'id="conv-(\d+)"', text_of(agent_client.get("/inbox/?" + query)))]

    assert ids("status=pending") == [email.pk]
    assert ids("status=all") == [sms.pk, email.pk]
    assert ids("status=all&channel=sms") == [sms.pk]
    assert ids("status=all&assignee=me") == [sms.pk]
    assert ids("status=all&assignee=unassigned") == [email.pk]
    assert ids(f"status=all&assignee={manager.pk}") == []
    assert ids("status=all&q=wedding") == [email.pk]
    assert ids("status=bogus&channel=fax&assignee=<x>") == [sms.pk]  # unknown filters fall back, no error


def test_the_list_pages_with_a_cursor(agent_client, receive):
    for n in range(30):
        receive(f"p{n}@example.com", text=f"message {n}")
    first = text_of(agent_client.get("/inbox/"))
    assert len(re.findall(r'id="conv-\d+"', first)) == 25
    more = re.search(r'id="more-rows"[^>]*hx-get="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = text_of(agent_client.get(more, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="more-rows"))
    assert len(re.findall(r'id="conv-\d+"', second)) == 5
    assert "<html" not in second and "more-rows" not in second
    assert agent_client.get("/inbox/?cursor=garbage").status_code == 200  # an expired link shows page one


def test_live_refresh_returns_only_rows_that_still_match(agent_client, receive):
    a = receive("a@example.com").message.conversation
    b = receive("b@example.com").message.conversation
    services.set_status(conversation=b, status="resolved")
    response = agent_client.get(f"/inbox/rows?status=open&ids={a.pk},{b.pk},abc,99999")
    assert response.status_code == 200
    assert f'id="conv-{a.pk}"' in text_of(response) and f'id="conv-{b.pk}"' not in text_of(response)
    assert json.loads(response["X-Inbox-Counts"])["open"] == 1


def test_inbox_queries_do_not_grow_with_the_page(agent_client, receive, django_assert_max_num_queries, agent):
    for n in range(3):
        receive(f"few{n}@example.com")
    with django_assert_max_num_queries(12) as few:
        agent_client.get("/inbox/?status=all")
    few = len(few.captured_queries)  # read now: the query log is a bounded deque
    for n in range(40):
        receive(f"many{n}@example.com")
        services.assign(conversation=Conversation.objects.latest("id"), assignee=agent)
    with django_assert_max_num_queries(few):
        response = agent_client.get("/inbox/?status=all")
    assert len(re.findall(r'id="conv-\d+"', text_of(response))) == 25


# --- one thread --------------------------------------------------------------------

def test_thread_shows_every_message_and_note_of_the_customer_in_time_order(agent_client, receive, agent, recording_sender):
    customer = make_customer("john@example.com", first_name="John", phone="+14155550100")
    old = receive("john@example.com", text="first, by email").message.conversation
    services.add_note(conversation=old, author=agent, body="Called him back")
    services.set_status(conversation=old, status="closed")
    new = receive("+14155550100", channel="sms", text="second, by sms").message.conversation
    services.reply(conversation=new, author=agent, text="Yes we can!", channel="sms")
    assert old.pk != new.pk
    page = text_of(agent_client.get(f"/inbox/{new.pk}/"))
    order = [page.index(t) for t in ("first, by email", "Called him back", "second, by sms", "Yes we can!")]
    assert order == sorted(order)
    assert "Sent by <strong>Alice</strong>" in page
    assert re.search(r'class="delivery delivery-(queued|failed|sent)"', page)
    assert "john@example.com" in page and "+14155550100" in page
    assert "Previous bookings" in page and "Loyalty tier" in page and "Next booking" in page
    assert customer.pk == Conversation.objects.get(pk=new.pk).customer_id


def test_opening_a_thread_marks_it_read(agent_client, receive):
    conversation = receive().message.conversation
    assert Conversation.objects.get().is_unread
    agent_client.get(f"/inbox/{conversation.pk}/")
    assert not Conversation.objects.get().is_unread


def test_times_are_shown_in_the_business_time_zone(agent_client, receive, settings):
    from datetime import datetime, timezone

    settings.BUSINESS_TIME_ZONE = "America/New_York"
    conversation = receive(received_at=datetime(2026, 1, 15, 17, 30, tzinfo=timezone.utc)).message.conversation
    assert "Jan 15, 12:30 PM EST" in text_of(agent_client.get(f"/inbox/{conversation.pk}/"))


def test_thread_times_read_as_the_date_filter_writes_them():
    """The thread writes its times without the template `date` filter; they must
    read the same, also around daylight-saving changes and at noon/midnight."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from django.template.defaultfilters import date
    from django.utils import timezone as django_timezone

    from inbox.dates import long_time, short_time

    moments = [datetime(2026, 3, 8, 9, 0, tzinfo=timezone.utc) + timedelta(minutes=37 * n) for n in range(40)]
    moments += [datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc) + timedelta(hours=n) for n in range(30)]
    moments += [datetime(2026, month, 1, 0, 0, tzinfo=timezone.utc) for month in range(1, 13)]
    for zone in ("America/Los_Angeles", "America/New_York", "Europe/Berlin", "UTC"):
        with django_timezone.override(ZoneInfo(zone)):
            for moment in moments:
                local = django_timezone.localtime(moment)
                assert short_time(local) == date(local, "M j, g:i A T")
                assert long_time(local) == date(local, "M j, Y, g:i A T")


def test_thread_shows_who_wrote_what_and_where(agent_client, receive, agent):
    """Authors, delivery failures, notes and items of the customer's other conversations."""
    quiet = make_user("quiet", first_name="")
    old = receive(text="old question").message.conversation
    services.set_status(conversation=old, status="closed")
    conversation = receive(text="new question", subject="Party <for> 10 & more").message.conversation
    assert conversation.pk != old.pk
    services.add_note(conversation=old, author=agent, body="Called back <b>twice</b>\nno answer")
    Note.objects.create(conversation=conversation, customer=conversation.customer, author=None, body="From a script")
    Message.objects.create(conversation=conversation, customer=conversation.customer, channel="sms",
                           direction="outbound", text="Bye", author=quiet, delivery_status="failed",
                           status_reason="Number <unreachable>")
    Message.objects.create(conversation=conversation, customer=conversation.customer, channel="email",
                           direction="outbound", text="Automatic", author=None, delivery_status="opened")
    page = text_of(agent_client.get(f"/inbox/{conversation.pk}/"))
    assert 'Internal note</span> by <strong>Alice</strong>' in page
    assert "Called back &lt;b&gt;twice&lt;/b&gt;<br>no answer" in page
    assert f"· conversation #{old.pk}</span>" in page and f"· conversation #{conversation.pk}</span>" not in page
    assert 'Internal note</span> by <strong>someone</strong>' in page
    assert "Sent by <strong>quiet</strong>" in page and "Sent by <strong>myhibachi</strong>" in page
    assert '<span class="delivery delivery-failed" title="Number &lt;unreachable&gt;">Failed</span>' in page
    assert "<strong>Failed:</strong> Number &lt;unreachable&gt;</p>" in page and ">Retry</button>" in page
    assert '<span class="delivery delivery-opened" title="">Opened</span>' in page
    assert '<div class="subject">Party &lt;for&gt; 10 &amp; more</div>' in page
    assert 'class="channel channel-sms"' in page and "Received" in page


def test_reply_box_starts_on_the_channel_the_customer_last_wrote_on(agent_client, receive, agent, recording_sender):
    make_customer("john@example.com", phone="+14155550100")
    conversation = receive("+14155550100", channel="sms", text="by sms").message.conversation
    receive("+14155550100", channel="call", text="a call")  # calls cannot be answered in writing

    def selected():
        page = text_of(agent_client.get(f"/inbox/{conversation.pk}/"))
        return re.search(r'<option value="(\w+)" selected>', page.split('id="reply-channel"')[1]).group(1)

    assert selected() == "sms"
    for n in range(55):  # the customer's last message is now off the newest page
        services.add_note(conversation=conversation, author=agent, body=f"note {n}")
    assert selected() == "sms"
    receive("john@example.com", text="by email")
    assert selected() == "email"


def test_customer_html_is_sanitised_and_text_escaped(agent_client, receive):
    message = receive(text="<script>alert(1)</script> plain",
                      html="<p>Hello</p><img src=x onerror=alert(2)><script>alert(3)</script>"
                           "<blockquote>On Monday you wrote: old stuff</blockquote>").message
    page = text_of(agent_client.get(f"/inbox/{message.conversation_id}/"))
    assert "alert(2)" not in page and "alert(3)" not in page and "onerror" not in page
    assert "<details class=\"quoted\"><summary>Show quoted history</summary>" in page
    response = agent_client.get("/inbox/")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; plain" in text_of(response)
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_plain_text_quoted_history_is_collapsed(agent_client, receive):
    message = receive(text="Sounds good!\n\nOn Tue, Jan 6, 2026 at 9:00 AM Chef wrote:\n> Shall we book?").message
    page = text_of(agent_client.get(f"/inbox/{message.conversation_id}/"))
    body, quoted = page.split("Show quoted history")
    assert "Sounds good!" in body and "Shall we book?" in quoted


THREAD_QUERIES = 16  # the thread screen of a customer with an email and a phone identity


def test_thread_queries_do_not_grow_with_the_thread(agent_client, receive, agent, django_assert_num_queries,
                                                    django_assert_max_num_queries):
    customer = make_customer("t@example.com", phone="+14155550100")
    conversation = receive("t@example.com", text="one").message.conversation
    assert conversation.customer_id == customer.pk
    agent_client.get(f"/inbox/{conversation.pk}/")  # marks read once
    # Pinned exactly: the profile panel reads each phone identity's opt-out, which
    # cost one query per phone identity when the identity query left it out.
    with django_assert_num_queries(THREAD_QUERIES) as few:
        page = text_of(agent_client.get(f"/inbox/{conversation.pk}/"))
    few = len(few.captured_queries)  # read now: the query log is a bounded deque
    assert 'href="tel:+14155550100"' in page and 'href="mailto:t@example.com"' in page
    customer.identities.create(kind="phone", value="+14155550111", opted_out_at=timezone.now())
    with django_assert_num_queries(few):
        page = text_of(agent_client.get(f"/inbox/{conversation.pk}/"))
    assert "(opted out of SMS)" in page
    for n in range(60):
        receive("t@example.com", text=f"more {n}")
        services.add_note(conversation=conversation, author=agent, body=f"note {n}")
        services.reply(conversation=conversation, author=agent, text=f"reply {n}", channel="email")
    agent_client.get(f"/inbox/{conversation.pk}/")
    with django_assert_max_num_queries(few):
        page = text_of(agent_client.get(f"/inbox/{conversation.pk}/"))
    assert page.count('class="item ') == 50  # the newest page; older ones load on demand
    older = re.search(r'hx-get="(/inbox/\d+/older\?before=[^"]+)"', page).group(1)
    with django_assert_max_num_queries(few):
        older_page = text_of(agent_client.get(older))
    assert older_page.count('class="item ') == 50 and "Show older messages" in older_page


def test_unknown_or_bad_conversation_ids_are_404(agent_client, db):
    assert agent_client.get("/inbox/999999/").status_code == 404
    assert agent_client.get("/inbox/99999999999999999999999/").status_code == 404
    assert agent_client.post("/inbox/999999/send", {"text": "hi"}).status_code == 404


# --- acting ------------------------------------------------------------------------

def test_reply_from_the_thread_queues_it(agent_client, receive, agent):
    conversation = receive().message.conversation
    response = agent_client.post(f"/inbox/{conversation.pk}/send", {"mode": "reply", "text": "See you then!",
                                                                    "channel": "email"}, **HX)
    assert response.status_code == 200
    assert "Reply queued for sending." in text_of(response)
    assert "inbox:thread-changed" in response["HX-Trigger"]
    reply = Message.objects.get(direction="outbound")
    assert (reply.text, reply.author, reply.channel) == ("See you then!", agent, "email")


def test_a_note_in_note_mode_is_not_sent(agent_client, receive):
    conversation = receive().message.conversation
    response = agent_client.post(f"/inbox/{conversation.pk}/send", {"mode": "note", "text": "VIP"}, **HX)
    assert "Note added" in text_of(response)
    assert Note.objects.get().body == "VIP"
    assert not Message.objects.filter(direction="outbound").exists()


@pytest.mark.parametrize("text, status, message", [
    ("   ", 422, "A reply cannot be empty."),
    ("x" * 70_000, 413, "the limit is 65,536"),
])
def test_bad_replies_show_an_inline_error_and_keep_the_text(agent_client, receive, text, status, message):
    conversation = receive().message.conversation
    response = agent_client.post(f"/inbox/{conversation.pk}/send", {"mode": "reply", "text": text}, **HX)
    assert response.status_code == status
    page = text_of(response)
    assert 'id="composer-error"' in page and message in page
    assert f">{text}</textarea>" in page
    assert not Message.objects.filter(direction="outbound").exists()


def test_bad_reply_without_javascript_rerenders_the_page_with_the_text(agent_client, receive):
    conversation = receive().message.conversation
    response = agent_client.post(f"/inbox/{conversation.pk}/send", {"mode": "reply", "text": ""})
    assert response.status_code == 422
    assert "A reply cannot be empty." in text_of(response) and "<html" in text_of(response)
    ok = agent_client.post(f"/inbox/{conversation.pk}/send", {"mode": "reply", "text": "Hello"})
    assert ok.status_code == 302 and ok["Location"].startswith(f"/inbox/{conversation.pk}/")


def test_reply_by_a_channel_the_customer_has_no_address_for(agent_client, receive, recording_sender):
    conversation = receive("only-email@example.com").message.conversation
    response = agent_client.post(f"/inbox/{conversation.pk}/send", {"text": "hi", "channel": "sms"}, **HX)
    assert response.status_code == 422
    assert "no phone number on file" in text_of(response)


def test_acting_on_a_conversation_someone_just_closed_says_so(agent_client, receive, manager):
    conversation = receive().message.conversation
    services.set_status(conversation=conversation, status="closed", by=manager)  # someone else, a moment ago
    header = agent_client.post(f"/inbox/{conversation.pk}/status", {"status": "resolved"}, **HX)
    assert header.status_code == 409
    assert "A closed conversation cannot be set to resolved" in text_of(header)
    assert 'id="conv-header"' in text_of(header)
    row = agent_client.post(f"/inbox/{conversation.pk}/status", {"status": "resolved", "from": "list"}, **HX)
    assert row.status_code == 409 and f'id="conv-{conversation.pk}"' in text_of(row)
    assert "cannot be set to resolved" in text_of(row)
    reply = agent_client.post(f"/inbox/{conversation.pk}/send", {"text": "still there?"}, **HX)
    assert reply.status_code == 409 and "Reopen it before replying" in text_of(reply)
    plain = agent_client.post(f"/inbox/{conversation.pk}/status", {"status": "resolved"})
    assert plain.status_code == 409 and "cannot be set to resolved" in text_of(plain)
    assert agent_client.post(f"/inbox/{conversation.pk}/status", {"status": "nonsense"}, **HX).status_code == 422


def test_assign_from_the_list_and_the_thread(agent_client, receive, agent, manager):
    conversation = receive().message.conversation
    row = agent_client.post(f"/inbox/{conversation.pk}/assign", {"assignee": "me", "from": "list"}, **HX)
    assert row.status_code == 200 and '<span class="assignee" title="Assigned to">Alice</span>' in text_of(row)
    assert Conversation.objects.get().assignee == agent
    header = agent_client.post(f"/inbox/{conversation.pk}/assign", {"assignee": str(manager.pk)}, **HX)
    assert f'<option value="{manager.pk}" selected>' in text_of(header)
    assert agent_client.post(f"/inbox/{conversation.pk}/assign", {"assignee": "none"}, **HX).status_code == 200
    assert Conversation.objects.get().assignee is None
    bad = agent_client.post(f"/inbox/{conversation.pk}/assign", {"assignee": "42abc"}, **HX)
    assert bad.status_code == 422 and "Choose a staff member" in text_of(bad)
    outsider = make_user("visitor", role=None)
    refused = agent_client.post(f"/inbox/{conversation.pk}/assign", {"assignee": str(outsider.pk)}, **HX)
    assert refused.status_code == 422 and "not an active staff member" in text_of(refused)
    assert agent_client.get(f"/inbox/{conversation.pk}/assign").status_code == 405


def test_resolve_from_the_list_without_javascript_returns_to_the_list(agent_client, receive):
    conversation = receive().message.conversation
    response = agent_client.post(f"/inbox/{conversation.pk}/status",
                                 {"status": "resolved", "from": "list", "next": "/inbox/?status=open"})
    assert response.status_code == 302 and response["Location"] == "/inbox/?status=open"
    evil = agent_client.post(f"/inbox/{conversation.pk}/status",
                             {"status": "open", "from": "list", "next": "https://evil.example/"})
    assert evil["Location"] == f"/inbox/{conversation.pk}/"


def test_live_thread_fragment_and_older_items(agent_client, receive, agent):
    conversation = receive(text="hello").message.conversation
    live = agent_client.get(f"/inbox/{conversation.pk}/live")
    assert 'id="live-payload"' in text_of(live) and f'data-conversations="{conversation.pk}"' in text_of(live)
    assert agent_client.get(f"/inbox/{conversation.pk}/older?before=bad").status_code == 400


def test_canned_responses_are_offered_with_their_shortcuts(agent_client, receive):
    CannedResponse.objects.create(title="Deposit", shortcut="deposit", body="Hi {{ customer.first_name }}")
    CannedResponse.objects.create(title="Old", shortcut="old", body="x", active=False)
    conversation = receive().message.conversation
    page = text_of(agent_client.get(f"/inbox/{conversation.pk}/"))
    assert 'data-shortcut="deposit"' in page and 'data-shortcut="old"' not in page


def test_every_control_has_a_label(agent_client, receive):
    conversation = receive().message.conversation
    for path in ("/inbox/", f"/inbox/{conversation.pk}/"):
        page = text_of(agent_client.get(path))
        for tag in re.findall(r"<(?:select|textarea|input)\b[^>]*>", page):
            if 'type="hidden"' in tag or 'type="radio"' in tag:
                continue
            control_id = re.search(r'id="([^"]+)"', tag).group(1)
            assert f'for="{control_id}"' in page, tag


def test_phone_width_meta_and_static_assets_are_local(client, agent_client, db):
    page = text_of(agent_client.get("/"))
    assert 'name="viewport" content="width=device-width' in page
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
    assert scripts and all(src.startswith("/static/") for src in scripts)
    assert "<script>" not in page  # no inline script: the CSP forbids it


# --- what the list page makes a browser download ------------------------------------

def test_the_list_downloads_no_reply_box_and_sends_no_indentation(agent_client, receive):
    """The reply box's script and the thread's styles come with the thread only; the rows carry no
    indentation (bench_screens.py's page-weight budget), and the row forms still swap their row."""
    conversation = receive().message.conversation
    inbox = text_of(agent_client.get("/inbox/"))
    thread = text_of(agent_client.get(f"/inbox/{conversation.pk}/"))
    assert "js/inbox.js" in inbox and "js/thread.js" not in inbox and "css/thread.css" not in inbox
    assert "js/thread.js" in thread and "css/thread.css" in thread
    assert thread.index("js/thread.js") < thread.index("js/inbox.js")  # inbox.js starts the thread with it
    row = re.search(r'<li class="row[^"]*" id="conv-\d+".*?</li>', inbox, re.S).group(0)
    assert not re.search(r"\n[ \t]+<", row)
    assert 'hx-post="/inbox/' in row and "hx-target" not in row
    assert re.search(r'<ul id="rows"[^>]* hx-target="closest li" hx-swap="outerHTML"', inbox)
