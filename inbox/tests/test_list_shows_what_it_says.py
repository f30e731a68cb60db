"""The inbox list shows what it says (issue 13): channels, tags, counts that follow
the filters, search hits as previews, and @mentions in notes."""
import json
import re

import pytest

from inbox import selectors, services
from inbox.models import Conversation, ConversationActivity, InboxEvent
from tests.factories import make_customer, make_user

HX = {"HTTP_HX_REQUEST": "true"}


def text_of(response):
    return response.content.decode()


def row_ids(html):
    return {int(pk) for pk in re.findall(r'<li class="row[^"]*" id="conv-(\d+)"', html)}


@pytest.fixture
def mixed(receive):
    """John wrote by email then SMS (one conversation, last message SMS); Maria by email only;
    Sam called (resolved)."""
    make_customer("john@example.com", phone="+1 415 555 0100")
    receive("john@example.com", text="Party for 12 in Sacramento?")
    john = receive("+1 415 555 0100", channel="sms", text="Sent you an email").message.conversation
    maria = receive("maria@example.com", text="Do you travel to San Jose?", sender_name="Maria Lopez"
                    ).message.conversation
    sam = receive("+1 650 555 0199", channel="call", text="Missed call, 0:42").message.conversation
    services.set_status(conversation=sam, status="resolved")
    return john, maria, sam


# --- channels: on a channel = any message on it ---------------------------------------

def test_channel_filter_matches_any_message_and_the_row_shows_every_channel(agent_client, mixed):
    john, maria, sam = mixed
    page = text_of(agent_client.get("/inbox/?status=all&channel=email"))
    assert row_ids(page) == {john.pk, maria.pk}  # John's last message is an SMS, his first an email
    row = re.search(rf'id="conv-{john.pk}".*?</li>', page, re.S).group(0)
    assert 'data-channels="email sms"' in row  # both shown, so the Email filter is visibly right
    assert "channel-email" in row and "channel-sms" in row
    sms = text_of(agent_client.get("/inbox/?status=all&channel=sms"))
    assert row_ids(sms) == {john.pk}


def test_the_api_filters_channels_the_same_way_and_lists_them(agent_client, mixed):
    john, maria, sam = mixed
    body = agent_client.get("/api/v1/inbox", {"channel": "email"}).json()
    assert {r["id"] for r in body["results"]} == {john.pk, maria.pk}
    by_id = {r["id"]: r for r in body["results"]}
    assert by_id[john.pk]["channels"] == ["email", "sms"] and by_id[john.pk]["last_message"]["channel"] == "sms"
    assert agent_client.get(f"/api/v1/inbox/{john.pk}").json()["conversation"]["channels"] == ["email", "sms"]


# --- counts follow the filters; search covers every status -------------------------------

def test_tab_counts_and_heading_follow_the_filters(agent_client, mixed):
    page = text_of(agent_client.get("/inbox/?status=open&channel=sms"))
    assert re.search(r'data-count="open"[^>]*>1</span> Open\)', page)  # the heading: John only
    assert re.search(r'Open <span class="count" data-count="open"[^>]*>1</span>', page)
    assert re.search(r'Resolved <span class="count" data-count="resolved"[^>]*>0</span>', page)
    assert "On SMS" in page and 'id="clear-filters-top"' in page
    calls = text_of(agent_client.get("/inbox/?status=open&channel=call"))
    assert re.search(r'Resolved <span class="count" data-count="resolved"[^>]*>1</span>', calls)


def test_live_refresh_counts_follow_the_filters(agent_client, mixed):
    john, maria, sam = mixed
    response = agent_client.get(f"/inbox/rows?status=open&channel=sms&ids={john.pk}")
    assert json.loads(response["X-Inbox-Counts"]) == {"open": 1, "pending": 0, "resolved": 0, "closed": 0, "all": 1}


def test_a_search_covers_every_status_with_the_tabs_as_facets(agent_client, receive, mixed):
    john, maria, sam = mixed
    page = text_of(agent_client.get("/inbox/", {"q": "missed"}))  # no tab chosen: all statuses
    assert row_ids(page) == {sam.pk}  # resolved, found anyway
    assert re.search(r'Resolved <span class="count" data-count="resolved"[^>]*>1</span>', page)
    assert re.search(r'Open <span class="count" data-count="open"[^>]*>0</span>', page)
    open_tab = text_of(agent_client.get("/inbox/", {"q": "missed", "status": "open"}))
    assert row_ids(open_tab) == set()
    assert 'id="search-all"' in open_tab and "status=all" in re.search(r'id="search-all" href="([^"]+)"',
                                                                       open_tab).group(1)
    assert 'id="clear-filters"' in open_tab


def test_an_empty_filtered_list_offers_to_clear_the_filters(agent_client, mixed):
    page = text_of(agent_client.get("/inbox/?status=pending&channel=chat"))
    assert "No conversations match" in page
    href = re.search(r'id="clear-filters" href="\?([^"]+)"', page).group(1)
    assert "channel" not in href and "status=pending" in href
    assert 'id="search-all"' not in page  # no search to widen


def test_filtered_counts_stop_at_the_cap(agent_client, receive, settings, monkeypatch):
    monkeypatch.setattr(selectors, "COUNT_CAP", 2)
    for n in range(4):
        receive(f"guest{n}@example.com")
    counts = selectors.list_counts(selectors.filter_conversations(Conversation.objects.all(), user=None,
                                                                  channel="email"))
    assert counts["open"] == 3  # cap + 1: "2+" on the screen
    assert text_of(agent_client.get("/inbox/?channel=email")).count("2+") >= 2  # tab and heading


def test_the_filtered_list_costs_a_fixed_number_of_queries(agent_client, receive, agent,
                                                           django_assert_max_num_queries):
    for n in range(3):
        conversation = receive(f"few{n}@example.com", text="Sacramento party").message.conversation
        services.assign(conversation=conversation, assignee=agent)
        services.add_tag(conversation=conversation, name="vip")
    query = {"status": "open", "channel": "email", "assignee": "me", "tag": "vip"}
    with django_assert_max_num_queries(16) as few:
        agent_client.get("/inbox/", query)
    few = len(few.captured_queries)
    with django_assert_max_num_queries(16) as searched:
        agent_client.get("/inbox/", {"q": "sacramento", "channel": "email"})
    searched = len(searched.captured_queries)
    for n in range(40):
        conversation = receive(f"many{n}@example.com", text="Sacramento party").message.conversation
        services.assign(conversation=conversation, assignee=agent)
        services.add_tag(conversation=conversation, name="vip")
    with django_assert_max_num_queries(few):
        response = agent_client.get("/inbox/", query)
    assert len(row_ids(text_of(response))) == 25
    with django_assert_max_num_queries(searched):
        response = agent_client.get("/inbox/", {"q": "sacramento", "channel": "email"})
    assert len(row_ids(text_of(response))) == 25


# --- search hits explain themselves ---------------------------------------------------------

def test_a_search_hit_shows_the_matching_note_with_the_words_marked(agent_client, receive, agent):
    conversation = receive("kim@example.com", text="Hello there").message.conversation
    receive("kim@example.com", text="Newest message, nothing to see")
    services.add_note(conversation=conversation, author=agent, body="Kim has a <b>peanut</b> allergy & more")
    page = text_of(agent_client.get("/inbox/", {"q": "peanut"}))
    row = re.search(rf'id="conv-{conversation.pk}".*?</li>', page, re.S).group(0)
    assert '<span class="why">Note:</span>' in row
    # Escaped first, then marked: the customer's or colleague's markup stays text.
    assert "has a &lt;b&gt;<mark>peanut</mark>&lt;/b&gt; allergy &amp; more" in row
    assert "Newest message" not in row
    live = text_of(agent_client.get(f"/inbox/rows?q=peanut&status=all&ids={conversation.pk}"))
    assert "<mark>peanut</mark>" in live  # a live refresh of the row keeps the reason


def test_a_search_hit_from_a_message_marks_every_word(agent_client, receive):
    conversation = receive("lee@example.com", text="We'd love a hibachi dinner party in Sacramento").message.conversation
    page = text_of(agent_client.get("/inbox/", {"q": "sacramento party"}))
    row = re.search(rf'id="conv-{conversation.pk}".*?</li>', page, re.S).group(0)
    assert "<mark>party</mark> in <mark>Sacramento</mark>" in row and "Email:" in row


def test_highlight_escapes_and_cuts_around_the_first_match():
    from inbox.search import highlight, terms

    text = "x " * 100 + "<script>alert(1)</script> booking for parties"
    marked = str(highlight(text, terms("party booked")))
    assert marked.startswith("…") and "<script>" not in marked
    assert "&lt;script&gt;" in marked and "<mark>booking</mark>" in marked and "<mark>parties</mark>" in marked


# --- tags ------------------------------------------------------------------------------------

def test_tags_are_added_and_removed_with_history_and_a_live_event(receive, agent):
    conversation = receive("kim@example.com").message.conversation
    before = InboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
    assert services.add_tag(conversation=conversation, name="Nut Allergy", by=agent) == ["nut-allergy"]
    assert services.add_tag(conversation=conversation, name="nut-allergy", by=agent) == ["nut-allergy"]  # no-op
    assert services.remove_tag(conversation=conversation, name="nut-allergy", by=agent) == []
    kinds = list(ConversationActivity.objects.filter(conversation=conversation, kind__in=["tagged", "untagged"])
                 .values_list("kind", "to_value", "from_value", "actor"))
    assert kinds == [("tagged", "nut-allergy", "", agent.pk), ("untagged", "", "nut-allergy", agent.pk)]
    events = list(InboxEvent.objects.filter(type="conversation.updated", id__gt=before).order_by("id"))
    assert [e.payload["tags"] for e in events][-2:] == [["nut-allergy"], []]
    assert events[-1].payload["by_name"] == "Alice"
    with pytest.raises(Exception, match="letters or digits"):
        services.add_tag(conversation=conversation, name="  !! ", by=agent)


def test_tags_from_the_thread_show_on_rows_and_filter_the_list(agent_client, receive, agent):
    tagged = receive("kim@example.com").message.conversation
    other = receive("lee@example.com").message.conversation
    response = agent_client.post(f"/inbox/{tagged.pk}/tags", {"add": "VIP"}, **HX)
    assert response.status_code == 200 and 'data-tag="vip"' in text_of(response)
    thread = text_of(agent_client.get(f"/inbox/{tagged.pk}/"))
    assert 'data-tag="vip"' in thread and '<option value="vip">' in thread  # shown, and suggested
    page = text_of(agent_client.get("/inbox/?tag=vip"))
    assert row_ids(page) == {tagged.pk} and '<span class="tag">vip</span>' in page and "Tagged vip" in page
    assert {r["id"] for r in agent_client.get("/api/v1/inbox", {"tag": "vip"}).json()["results"]} == {tagged.pk}
    history = text_of(agent_client.get(f"/inbox/{tagged.pk}/history", **HX))
    assert "Alice tagged it vip" in history
    removed = agent_client.post(f"/inbox/{tagged.pk}/tags", {"remove": "vip"}, **HX)
    assert 'data-tag="vip"' not in text_of(removed)
    assert row_ids(text_of(agent_client.get("/inbox/?tag=vip"))) == set()
    bad = agent_client.post(f"/inbox/{other.pk}/tags", {"add": "***"}, **HX)
    assert bad.status_code == 422 and "letters or digits" in text_of(bad)


def test_tags_through_the_api(agent_client, receive):
    conversation = receive("kim@example.com").message.conversation
    response = agent_client.post(f"/api/v1/inbox/{conversation.pk}/tags", {"name": "Birthday"},
                                 content_type="application/json")
    assert response.status_code == 200 and response.json()["tags"] == ["birthday"]
    assert agent_client.post(f"/api/v1/inbox/{conversation.pk}/tags", {"name": "--"},
                             content_type="application/json").status_code == 400
    assert agent_client.delete(f"/api/v1/inbox/{conversation.pk}/tags/birthday").json()["tags"] == []


def test_tag_endpoints_are_for_staff_only(client, receive):
    conversation = receive("kim@example.com").message.conversation
    client.force_login(make_user("visitor", role=None))
    assert client.post(f"/inbox/{conversation.pk}/tags", {"add": "x"}).status_code == 403
    assert client.post(f"/api/v1/inbox/{conversation.pk}/tags", {"name": "x"},
                       content_type="application/json").status_code == 403
    assert client.get("/api/v1/staff").status_code == 403
    assert not conversation.tags.exists()


# --- @mentions --------------------------------------------------------------------------------

def test_staff_names_are_suggested_by_any_part_of_the_name(agent_client, agent):
    make_user("akim", first_name="Alex", last_name="Kim")
    make_user("visitor", role=None, first_name="Alexandra")
    make_user("gone", first_name="Alexei", is_active=False)
    found = agent_client.get("/api/v1/staff", {"q": "al"}).json()["results"]
    assert [(p["username"], p["name"]) for p in found] == [("alice", "Alice"), ("akim", "Alex Kim")] or \
        {p["username"] for p in found} == {"alice", "akim"}
    assert [p["username"] for p in agent_client.get("/api/v1/staff", {"q": "kim"}).json()["results"]] == ["akim"]


def test_a_note_mentioning_an_unknown_name_is_flagged_before_it_is_saved(agent_client, receive):
    make_user("akim", first_name="Alex", last_name="Kim")
    conversation = receive("kim@example.com").message.conversation
    flagged = agent_client.post(f"/inbox/{conversation.pk}/send", {"mode": "note", "text": "@akim and @bob, see"}, **HX)
    assert flagged.status_code == 422 and "No staff member is called @bob" in text_of(flagged)
    assert "@akim and @bob, see" in text_of(flagged)  # the text is kept
    assert not conversation.notes.exists()
    saved = agent_client.post(f"/inbox/{conversation.pk}/send",
                              {"mode": "note", "text": "@akim and @bob, see", "mentions_checked": "1"}, **HX)
    assert saved.status_code == 200 and conversation.notes.count() == 1
    ok = agent_client.post(f"/inbox/{conversation.pk}/send", {"mode": "note", "text": "ask @akim."}, **HX)
    assert ok.status_code == 200 and conversation.notes.count() == 2
    thread = text_of(agent_client.get(f"/inbox/{conversation.pk}/"))
    assert '<span class="mention">@akim</span>.' in thread
    assert "kim@example.com" in thread and '<span class="mention">@example.com' not in thread


def test_event_payloads_name_the_person(receive, agent):
    conversation = receive("kim@example.com").message.conversation
    make_user("akim", first_name="Alex", last_name="Kim")
    from django.contrib.auth import get_user_model

    alex = get_user_model().objects.get(username="akim")
    services.assign(conversation=conversation, assignee=agent, by=alex)
    event = InboxEvent.objects.filter(type="conversation.updated").latest("id")
    assert event.payload["by_name"] == "Alex Kim" and event.payload["by_id"] == alex.pk


def test_filtered_counts_are_shared_briefly_and_dropped_by_a_status_change(agent_client, receive):
    conversation = receive("kim@example.com").message.conversation
    assert text_of(agent_client.get("/inbox/?channel=email")).count('data-count="open" data-cap="1000">1<') == 2
    services.set_status(conversation=conversation, status="resolved")  # drops them at once
    page = text_of(agent_client.get("/inbox/?channel=email"))
    assert re.search(r'Resolved <span class="count" data-count="resolved"[^>]*>1</span>', page)
    assert re.search(r'Open <span class="count" data-count="open"[^>]*>0</span>', page)
