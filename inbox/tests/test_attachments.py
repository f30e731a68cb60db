"""Stored files of every channel (email attachments, MMS files, call recordings): shown in the
thread by one renderer and served by one route, to staff only, through their own conversation."""
import pytest
from django.test import Client

from inbox import attachments
from tests.factories import make_customer, make_user

pytestmark = pytest.mark.django_db
PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 100
AWKWARD_NAME = 'menu "final"\r\nX-Injected: 1.pdf'


@pytest.fixture
def files(receive, media):
    """One customer's thread: an MMS picture and an email with a PDF (with an awkward name) and an SVG."""
    make_customer("john@example.com", phone="+14155550100")
    picture = attachments.store(filename="venue.png", content_type="image/png", data=PNG)
    mms = receive("+14155550100", channel="sms", text="Our venue", metadata={"attachments": [picture]}).message
    pdf = attachments.store(filename=AWKWARD_NAME, content_type="application/pdf", data=b"%PDF-1.4 menu")
    svg = attachments.store(filename="logo.svg", content_type="image/svg+xml", data=b"<svg onload=alert(1)></svg>")
    mail = receive("john@example.com", text="The menu", metadata={"attachments": [pdf, svg]}).message
    assert mms.conversation_id == mail.conversation_id
    return mms, mail


def url(message, n):
    return f"/inbox/{message.conversation_id}/messages/{message.pk}/attachments/{n}"


def test_an_mms_picture_and_an_email_attachment_show_and_download_through_one_route(
        agent_client, files, django_assert_num_queries):
    mms, mail = files
    thread = agent_client.get(f"/inbox/{mms.conversation_id}/").content.decode()
    assert f'<a href="{url(mms, 0)}"><img src="{url(mms, 0)}" alt="venue.png"' in thread
    assert f'<a href="{url(mail, 0)}" download>menu &quot;final&quot;\r\nX-Injected: 1.pdf</a>' in thread
    assert f'<a href="{url(mail, 1)}" download>logo.svg</a>' in thread  # an SVG is no picture to show

    with django_assert_num_queries(3):  # the user, the conversation, the message
        shown = agent_client.get(url(mms, 0))
    assert shown.status_code == 200 and b"".join(shown.streaming_content) == PNG
    assert shown["Content-Type"] == "image/png"
    assert shown["Content-Disposition"] == 'inline; filename="venue.png"'
    assert shown["X-Content-Type-Options"] == "nosniff"

    download = agent_client.get(url(mail, 0))
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"%PDF-1.4 menu"
    assert download["Content-Type"] == "application/octet-stream"
    assert download["Content-Disposition"] == "attachment; filename*=utf-8''menu%20%22final%22%0D%0AX-Injected%3A%201.pdf"
    assert "X-Injected" not in download.headers and download["X-Content-Type-Options"] == "nosniff"

    svg = agent_client.get(url(mail, 1))
    assert svg["Content-Type"] == "application/octet-stream" and svg["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in svg["Content-Security-Policy"]


def test_stored_files_are_refused_outside_their_conversation_and_to_non_staff(agent_client, receive, files):
    mms, mail = files
    other = receive("someone@example.com", text="hello").message.conversation_id
    for path in (f"/inbox/{other}/messages/{mms.pk}/attachments/0",  # another customer's conversation
                 f"/inbox/999999/messages/{mms.pk}/attachments/0",  # no such conversation
                 url(mail, 2), url(mms, 1),  # no such attachment
                 f"/inbox/{mms.conversation_id}/messages/{mms.pk}/recording",  # not a call
                 f"/inbox/{mms.conversation_id}/messages/999999/attachments/0"):
        assert agent_client.get(path).status_code == 404, path
    client = Client()
    assert client.get(url(mms, 0)).status_code == 302  # signed out: to the log-in page
    client.force_login(make_user("visitor", role=None))
    assert client.get(url(mms, 0)).status_code == 403
