"""Customer html on the staff screens: what a sender can make a reader's browser
do (remote images), what stored html can carry past ingest, and whose address
a message really came from."""
import http.server
import ipaddress
import re
import threading
from urllib.parse import quote

import pytest

from inbox import image_proxy, remote_images
from inbox.models import Message
from tests.factories import make_customer, make_user

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


def text_of(response):
    return response.content.decode()


def thread_items(page: str) -> str:
    return page.split('id="thread-items"', 1)[1].split("</ol>", 1)[0]


def loading_sources(markup: str) -> list[str]:
    """Every src/srcset an element would load, as the browser reads the markup."""
    return re.findall(r"<[a-z]+\b[^>]*?\s(?:src|srcset)\s*=\s*[\"']?([^\"'\s>]*)", markup, re.IGNORECASE)


# --- 12: remote images ------------------------------------------------------------

def test_remote_images_in_customer_email_do_not_load_until_asked_for(agent_client, receive):
    tracked = receive(html='<p>Menu attached <img src="https://tracker.example/p.gif" alt="" width="1"></p>'
                           '<blockquote>On Monday you wrote: <img src="http://old.example/logo.png"></blockquote>',
                      text="Menu attached").message
    receive(html="<p>No pictures here</p>", text="No pictures here")
    page = text_of(agent_client.get(f"/inbox/{tracked.conversation_id}/"))
    items = thread_items(page)
    assert loading_sources(items) == []  # nothing in the thread loads by itself
    assert "tracker.example" not in re.sub(r'data-proxied-src="[^"]*"', "", items)
    proxied = re.findall(r'data-proxied-src="([^"]+)"', items)
    assert [p.split("&amp;sig=")[0] for p in proxied] == [
        "/inbox/image?url=" + quote("https://tracker.example/p.gif", safe=""),
        "/inbox/image?url=" + quote("http://old.example/logo.png", safe="")]
    tracked_item = items.split(f'id="m-{tracked.pk}"')[1].split("</li>")[0]
    assert tracked_item.count('<button type="button" class="show-images">Show images</button>') == 1
    assert items.count("Show images") == 1  # not on the message without images


@pytest.mark.parametrize("src", ["//tracker.example/p.gif", " https://tracker.example/p.gif",
                                 "HTTPS://tracker.example/p", "/static/x.png", "cid:part1@example",
                                 "/inbox/image?url=https%3A%2F%2Ftracker.example%2Fp&sig=forged"])
def test_no_stored_image_source_loads_by_itself(agent_client, receive, src):
    """Also html written straight to the table: relative and protocol-relative
    sources, or one that points at the proxy with a forged signature."""
    conversation = receive(text="hi").message.conversation
    Message.objects.create(conversation=conversation, customer=conversation.customer, channel="email",
                           direction="inbound", text="pic", html=f'<p>pic <img src="{src}" alt="pic"></p>')
    items = thread_items(text_of(agent_client.get(f"/inbox/{conversation.pk}/")))
    assert loading_sources(items) == []
    assert "forged" not in items and "/static/x.png" not in items


def test_the_page_allows_images_from_this_origin_and_data_only(agent_client, receive):
    conversation = receive().message.conversation
    for path in ("/inbox/", f"/inbox/{conversation.pk}/", f"/inbox/{conversation.pk}/live"):
        policy = agent_client.get(path)["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert directives["img-src"] == "'self' data:"


class ImageHost:
    """A small real HTTP server on loopback: what a remote image host answers."""

    def __init__(self):
        self.requests = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host.requests.append(self.path)
                answer = host.routes.get(self.path.split("?")[0])
                if answer is None:
                    self.send_error(404)
                    return
                status, headers, body = answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.routes = {
            "/p.png": (200, {"Content-Type": "image/png", "Content-Length": str(len(PNG)), "Set-Cookie": "t=1"}, PNG),
            "/page": (200, {"Content-Type": "text/html"}, b"<script>alert(1)</script>"),
            "/svg": (200, {"Content-Type": "image/svg+xml"}, b"<svg onload='alert(1)'/>"),
            "/huge": (200, {"Content-Type": "image/png", "Content-Length": str(50 * 1024 * 1024)}, PNG),
            "/stream": (200, {"Content-Type": "image/png"}, PNG * 2000),  # no length: read until the limit
            # A length that str.isdigit() accepts and int() does not.
            "/odd-length": (200, {"Content-Type": "image/png", "Content-Length": "\u00b2"}, PNG),
        }
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image_host():
    host = ImageHost()
    yield host
    host.close()


@pytest.fixture
def reachable(monkeypatch, image_host):
    """Let the proxy reach this one loopback test server (and nothing else it refuses)."""
    allowed = image_proxy.destination_allowed

    def allowed_here(address, port):
        return (address, port) == (ipaddress.ip_address("127.0.0.1"), image_host.port) or allowed(address, port)

    monkeypatch.setattr(image_proxy, "destination_allowed", allowed_here)
    return image_host


def proxied(url):
    return remote_images.proxy_url(url)


def test_show_images_fetches_through_our_own_origin(agent_client, reachable):
    response = agent_client.get(proxied(reachable.url("/p.png")))
    assert response.status_code == 200
    assert response.content == PNG
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "Set-Cookie" not in response  # nothing of the remote host's but the image
    assert reachable.requests == ["/p.png"]


def test_the_image_proxy_is_for_staff_only(client, db, reachable):
    url = proxied(reachable.url("/p.png"))
    assert client.get(url).status_code == 302  # to log in
    client.force_login(make_user("visitor", role=None))
    assert client.get(url).status_code == 403
    assert reachable.requests == []


def test_the_image_proxy_fetches_only_addresses_this_server_wrote(agent_client, reachable):
    forged = f"/inbox/image?url={quote(reachable.url('/p.png'), safe='')}&sig=" + "0" * 32
    response = agent_client.get(forged)
    assert response.status_code == 403
    assert agent_client.get(f"/inbox/image?url={quote(reachable.url('/p.png'), safe='')}").status_code == 403
    assert reachable.requests == []


def test_the_image_proxy_refuses_this_machine_and_private_networks(agent_client, image_host):
    """SSRF: an email's image address must not reach loopback, the cloud metadata
    address or the private network. The test server listens on loopback and is
    never asked."""
    response = agent_client.get(proxied(image_host.url("/p.png")))
    assert response.status_code == 403
    assert b"public internet" in response.content
    assert image_host.requests == []
    for url in ("http://localhost/p.png", "http://127.0.0.1/p.png", "http://[::1]/p.png", "http://2130706433/p.png",
                "http://0.0.0.0/p.png", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.5/p.png",
                "https://192.168.1.1/p.png", "http://100.64.0.1/p.png", "http://[::ffff:127.0.0.1]/p.png",
                "http://[fd00::1]/p.png", "http://224.0.0.1/p.png"):
        with pytest.raises(image_proxy.Refused):
            image_proxy.fetch_image(url)


@pytest.mark.parametrize("url", ["ftp://93.184.215.14/p.png", "file:///etc/passwd", "gopher://93.184.215.14/",
                                 "http://user:pw@93.184.215.14/p.png", "http://93.184.215.14:8080/p.png",
                                 "http://93.184.215.14:22/p.png", "http:///p.png"])
def test_the_image_proxy_refuses_other_schemes_ports_and_credentials(url):
    with pytest.raises(image_proxy.Refused):
        image_proxy.fetch_image(url)


def test_a_redirect_is_checked_like_the_first_address(agent_client, reachable):
    other = ImageHost()  # loopback too, and not let through
    try:
        reachable.routes["/moved"] = (302, {"Location": other.url("/p.png")}, b"")
        response = agent_client.get(proxied(reachable.url("/moved")))
        assert response.status_code == 403
        assert other.requests == []
    finally:
        other.close()


@pytest.mark.parametrize("path", ["/page", "/svg", "/huge", "/stream", "/missing", "/odd-length"])
def test_the_image_proxy_passes_on_only_images_within_the_size_limit(agent_client, reachable, monkeypatch, path):
    monkeypatch.setattr(image_proxy, "MAX_BYTES", len(PNG) * 100)
    response = agent_client.get(proxied(reachable.url(path)))
    assert response.status_code == 502
    assert response["Content-Type"].startswith("text/plain")
    assert b"alert" not in response.content


# --- 13: stored html is cleaned when shown; the admin cannot change messages --------

NASTY = ('<p>Hi</p><script>alert(1)</script><img src="x" onerror="alert(2)">'
         '<a href="javascript:alert(3)">click</a><p onclick="alert(4)">there</p>')


@pytest.mark.parametrize("quoted", ["", "<blockquote>On Monday you wrote: <script>alert(5)</script></blockquote>"])
def test_html_stored_around_the_services_is_cleaned_on_the_thread_and_the_api(agent_client, receive, quoted):
    conversation = receive(text="hello").message.conversation
    Message.objects.create(conversation=conversation, customer=conversation.customer, channel="email",
                           direction="inbound", text="Hi there", html=NASTY + quoted)
    for body in (thread_items(text_of(agent_client.get(f"/inbox/{conversation.pk}/"))),
                 text_of(agent_client.get(f"/inbox/{conversation.pk}/live")),
                 text_of(agent_client.get(f"/api/v1/inbox/{conversation.pk}"))):
        assert "Hi" in body and "click" in body
        for bad in ("<script", "onerror", "onclick", "javascript:", "alert("):
            assert bad not in body, bad


def test_a_manager_cannot_change_or_add_a_message_in_the_admin(manager_client, receive):
    message = receive(html="<p>Original</p>", text="Original").message
    url = f"/admin/inbox/message/{message.pk}/change/"
    page = manager_client.get(url)
    assert page.status_code == 200  # managers can still read it
    assert "Original" in text_of(page) and 'name="html"' not in text_of(page)
    response = manager_client.post(url, {
        "conversation": message.conversation_id, "customer": message.customer_id, "channel": "email",
        "direction": "inbound", "subject": "", "text": "Forged", "html": '<img src="x" onerror="alert(1)">',
        "metadata": "{}", "delivery_status": "received", "status_reason": "",
        "created_at_0": "2026-01-01", "created_at_1": "10:00:00"})
    assert response.status_code == 403
    message.refresh_from_db()
    assert (message.html, message.text) == ("<p>Original</p>", "Original")
    assert manager_client.get("/admin/inbox/message/add/").status_code == 403


# --- 6: mail from an address that is not the customer's primary one ----------------

def test_the_thread_names_the_sender_when_it_is_not_the_primary_address(agent_client, receive):
    customer = make_customer("first@example.com")
    customer.identities.create(kind="email", value="second@example.com")
    from_primary = receive("first@example.com", text="from my usual address").message
    from_second = receive("Second@Example.com", text="from my other address").message
    assert from_second.customer_id == from_primary.customer_id == customer.pk
    for path in (f"/inbox/{from_primary.conversation_id}/", f"/inbox/{from_primary.conversation_id}/live"):
        page = text_of(agent_client.get(path))
        primary_item = page.split(f'id="m-{from_primary.pk}"')[1].split("</li>")[0]
        second_item = page.split(f'id="m-{from_second.pk}"')[1].split("</li>")[0]
        assert 'Received from <strong class="sender">second@example.com</strong>' in second_item
        assert "Received from" not in primary_item and "first@example.com" not in primary_item


def test_without_a_primary_email_every_email_names_its_sender(agent_client, receive):
    customer = make_customer("x@example.com", phone="+14155550100")
    customer.identities.update(is_primary=False)
    customer.identities.filter(kind="phone").update(is_primary=True)
    message = receive("x@example.com", text="hello").message
    sms = receive("+14155550100", channel="sms", text="by text").message
    page = text_of(agent_client.get(f"/inbox/{message.conversation_id}/"))
    assert 'Received from <strong class="sender">x@example.com</strong>' in page
    assert "Received from" not in page.split(f'id="m-{sms.pk}"')[1].split("</li>")[0]
