"""Two agents, one customer, in two browser contexts on two nodes: presence (who views,
who types) and a reply held because the other agent answered meanwhile."""
import pytest
from playwright.sync_api import expect

from inbox.models import Message
from tests.factories import make_user

from .conftest import ARTIFACTS, Session, screenshot
from .live_server import LiveServer, database_url
from .test_staff_screens import receive

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]

GONE_WITHIN_MS = 5_000


@pytest.fixture
def second_node(live, django_db_blocker):
    """Another ASGI node (uvicorn, as production runs) sharing the database and the channel
    layer's prefix with the live server: sockets on either must meet."""
    from django.conf import settings

    with django_db_blocker.unblock():
        node = LiveServer(database_url=database_url(), redis_url=settings.REDIS_URL, prefix=live.prefix,
                          server="uvicorn", log_path=ARTIFACTS / "live-server-2.log")
    node.start()
    yield node
    node.stop()


def outbound(author):
    return list(Message.objects.filter(direction="outbound", author__username=author).values_list("text", flat=True))


def test_two_agents_see_each_other_and_a_stale_reply_is_held(live, second_node, browser, sign_in):
    make_user("alice", first_name="Alice", last_name="Kim")
    make_user("bob", first_name="Bob", last_name="Lee")
    conversation = receive("dana@example.com", "Can you do Saturday for 12 guests?",
                           sender_name="Dana Cruz").message.conversation
    url = f"/inbox/{conversation.pk}/"
    alice = sign_in("alice")  # node 1 (daphne)
    bob = Session(browser, second_node, "bob")  # node 2 (uvicorn)
    try:
        for person in (alice, bob):
            person.page.goto(url)
            person.wait_live()
        presence = bob.page.locator("#presence")
        expect(presence).to_contain_text("Alice Kim is viewing")
        expect(alice.page.locator("#presence")).to_contain_text("Bob Lee is viewing")

        alice.page.locator("#reply-text").press_sequentially("Saturday works, see you")
        expect(presence).to_contain_text("Alice Kim is typing a reply…")
        screenshot(bob.page, "presence.png", docs=True)
        # She stops: a few seconds later she is back to viewing.
        expect(presence).to_contain_text("Alice Kim is viewing", timeout=10_000)

        # Bob answers first, while Alice's reply waits in her box.
        bob.page.locator("#reply-text").fill("Booked you in for Saturday!")
        bob.page.get_by_role("button", name="Send reply").click()
        expect(bob.page.locator("#composer .notice")).to_have_text("Reply queued for sending.")
        expect(alice.page.locator("#thread-items")).to_contain_text("Booked you in for Saturday!")

        alice.page.get_by_role("button", name="Send reply").click()
        expect(alice.page.locator("#composer-error")).to_have_text(
            "New activity since you started — review before sending.")
        held = alice.page.locator("#stale-activity")
        expect(held).to_contain_text("Bob Lee replied")
        expect(held).to_contain_text("Booked you in for Saturday!")
        expect(alice.page.locator("#reply-text")).to_have_value("Saturday works, see you")
        assert outbound("alice") == []
        screenshot(alice.page, "stale-reply.png", docs=True)

        alice.page.get_by_role("button", name="Send anyway").click()
        expect(alice.page.locator("#composer .notice")).to_have_text("Reply queued for sending.")
        expect(alice.page.locator("#stale-activity")).to_have_count(0)
        assert outbound("alice") == ["Saturday works, see you"]

        # Alice closes her tab: Bob sees her go within seconds.
        alice.page.close()
        expect(presence).to_be_hidden(timeout=GONE_WITHIN_MS)
        assert outbound("alice") == ["Saturday works, see you"]  # sent once
    finally:
        bob.close()
    assert not bob.errors, bob.errors
