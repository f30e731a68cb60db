"""SMS composer counter, opt-out notice and click to call in a real browser, against a live server of
its own whose RingCentral is the stand-in (channels_ingest/tests/ringcentral_standin.py)."""
import pytest
from django.conf import settings
from playwright.sync_api import expect

from channels_ingest.models import AgentPhone
from channels_ingest.tests.ringcentral_standin import RingCentralStandIn
from crm.models import CustomerIdentity
from tests.factories import make_customer, make_user

from .conftest import ARTIFACTS, Session, in_thread
from .live_server import LiveServer, database_url

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]
CUSTOMER = "+14155550100"


@pytest.fixture(scope="module")
def standin():
    server = RingCentralStandIn().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rc_server(django_db_setup, django_db_blocker, standin):
    ARTIFACTS.mkdir(exist_ok=True)
    with django_db_blocker.unblock():
        server = LiveServer(database_url=database_url(), redis_url=settings.REDIS_URL,
                            log_path=ARTIFACTS / "live-server-rc.log")
    server.env.update({"RINGCENTRAL_SERVER_URL": standin.url, "RINGCENTRAL_CLIENT_ID": standin.client_id,
                       "RINGCENTRAL_CLIENT_SECRET": standin.client_secret, "RINGCENTRAL_JWT": standin.jwt,
                       "RINGCENTRAL_SMS_FROM": "+14155550199", "RINGCENTRAL_VERIFICATION_TOKEN": "browser-token"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live(rc_server, transactional_db, settings, standin):
    for name, value in rc_server.settings_overrides().items():
        setattr(settings, name, value)
    standin.reset()
    return rc_server


@pytest.fixture
def session(browser, live):
    sessions = []

    def open_as(username):
        sessions.append(Session(browser, live, username))
        return sessions[-1]

    yield open_as
    for s in sessions:
        s.close()
    assert not [e for s in sessions for e in s.errors]


def sms_conversation():
    from inbox import services

    make_customer("john@example.com", phone=CUSTOMER)
    return in_thread(services.receive_message, channel="sms", sender=CUSTOMER, text="Hi!",
                     external_id="rc-1").message.conversation


def test_the_sms_counter_counts_utf16_units_and_segments_as_staff_type(live, session):
    make_user("alice")
    conversation = sms_conversation()
    page = session("alice").page
    page.goto(f"/inbox/{conversation.pk}/")
    expect(page.locator("#reply-channel")).to_have_value("sms")
    box, counter = page.locator("#reply-text"), page.locator("#sms-count")
    box.fill("See you Saturday 🍤")
    expect(counter).to_have_text("19 / 1,000 characters · 1 SMS segment")
    box.fill("x" * 161)
    expect(counter).to_have_text("161 / 1,000 characters · 2 SMS segments")
    box.fill("🍤" * 501)
    expect(counter).to_contain_text("1,002 / 1,000 characters")
    expect(counter).to_contain_text("too long: shorten it by 2")
    page.locator("#reply-channel").select_option("email")
    expect(counter).to_be_hidden()


def test_the_composer_shows_why_an_opted_out_number_gets_no_sms(live, session):
    make_user("alice")
    conversation = sms_conversation()
    CustomerIdentity.objects.filter(value=CUSTOMER).update(opted_out_at="2026-11-01T10:00:00Z", opt_out_keyword="STOP")
    page = session("alice").page
    page.goto(f"/inbox/{conversation.pk}/")
    refusal = page.locator("#channel-refusal")
    expect(refusal).to_contain_text("opted out of SMS by texting STOP")
    page.locator("#reply-channel").select_option("email")
    expect(refusal).to_be_hidden()


def test_click_to_call_rings_the_agent_then_the_customer(live, session, standin):
    alice = make_user("alice")
    AgentPhone.objects.create(user=alice, phone_number="+14155550142")
    conversation = sms_conversation()
    page = session("alice").page
    page.goto(f"/inbox/{conversation.pk}/")
    page.get_by_role("button", name=f"Call {CUSTOMER} from your RingCentral phone").click()
    expect(page.locator(".ringout-result")).to_contain_text("Calling your phone (+14155550142) first, then +14155550100")
    assert standin.ringouts == [{"from": {"phoneNumber": "+14155550142"}, "to": {"phoneNumber": CUSTOMER},
                                 "playPrompt": False}]
