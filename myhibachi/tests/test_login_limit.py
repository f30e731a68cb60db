"""The limit on log-in attempts holds on every log-in page, under parallel
attempts, and against forged client addresses."""
import threading

import pytest
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import Client

from myhibachi import login_limit
from tests.concurrency import race
from tests.factories import make_user

RIGHT = "pw-for-tests-1"


@pytest.fixture
def private_cache(settings):
    """Counts in this process only: a shared Redis may be flushed by another test run."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "login-limit-tests"}}
    from django.core.cache import cache

    cache.clear()  # LocMemCache keeps its data per LOCATION across tests
    yield
    cache.clear()


def wrong(client, path="/login/", username="alice", **extra):
    return client.post(path, {"username": username, "password": "nope"}, **extra)


def test_the_admin_log_in_page_is_limited_too(client, manager, settings, private_cache):
    settings.LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        assert wrong(client, "/admin/login/", "morgan").status_code == 200
    response = client.post("/admin/login/", {"username": "morgan", "password": RIGHT})
    assert response.status_code == 429
    assert "Too many failed log-in attempts for this username. Wait 15 minutes" in response.content.decode()
    assert int(response["Retry-After"]) > 0


def test_failures_on_either_page_add_up(client, agent, settings, private_cache):
    settings.LOGIN_MAX_FAILURES = 3
    wrong(client, "/login/")
    wrong(client, "/admin/login/")
    wrong(client, "/login/")
    for path in ("/login/", "/admin/login/"):
        response = client.post(path, {"username": "alice", "password": RIGHT})
        assert response.status_code == 429


def test_forged_x_real_ip_headers_give_no_more_guesses(client, agent, settings, private_cache):
    settings.LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        wrong(client)
    for n in range(5):
        response = wrong(client, HTTP_X_REAL_IP=f"198.51.100.{n}")
        assert response.status_code == 429


def test_an_untrusted_client_cannot_spread_guesses_over_addresses(client, db, settings, private_cache):
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    for n in range(3):
        assert wrong(client, username=f"user{n}", HTTP_X_REAL_IP=f"198.51.100.{n}").status_code == 200
    response = wrong(client, username="user9", HTTP_X_REAL_IP="198.51.100.9")
    assert response.status_code == 429
    assert "Too many failed log-in attempts from this address" in response.content.decode()


def test_x_real_ip_from_a_trusted_proxy_names_the_client(client, agent, settings, private_cache):
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    via_proxy = {"REMOTE_ADDR": "10.1.2.3"}
    for n in range(3):
        wrong(client, username=f"user{n}", HTTP_X_REAL_IP="203.0.113.5", **via_proxy)
    assert wrong(client, username="user9", HTTP_X_REAL_IP="203.0.113.5", **via_proxy).status_code == 429
    # Another client behind the same proxy is not locked out by the first one's failures.
    response = client.post("/login/", {"username": "alice", "password": RIGHT}, HTTP_X_REAL_IP="203.0.113.6",
                           **via_proxy)
    assert response.status_code == 302


@pytest.mark.parametrize("remote, header, trusted, expected", [
    ("192.0.2.7", "198.51.100.1", [], "192.0.2.7"),
    ("192.0.2.7", "198.51.100.1", ["10.0.0.0/8"], "192.0.2.7"),
    ("10.0.0.2", "198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
    ("127.0.0.1", "2001:db8::1", ["127.0.0.1"], "2001:db8::1"),
    ("127.0.0.1", "not-an-address", ["127.0.0.1"], "127.0.0.1"),
    ("127.0.0.1", "", ["127.0.0.1"], "127.0.0.1"),
    ("", "198.51.100.1", ["127.0.0.1"], "unknown"),
])
def test_client_address(rf, settings, remote, header, trusted, expected):
    settings.TRUSTED_PROXIES = trusted
    request = rf.get("/", REMOTE_ADDR=remote, HTTP_X_REAL_IP=header)
    assert login_limit.client_address(request) == expected


def test_counting_is_atomic_under_parallel_attempts(settings, private_cache):
    settings.LOGIN_MAX_FAILURES = 5
    results = race(20, lambda i: login_limit.begin(None, "alice"))
    assert sum(isinstance(r, login_limit.Attempt) for r in results) == 5
    assert sum(isinstance(r, login_limit.Lockout) for r in results) == 15


@pytest.mark.redis
def test_a_redis_counter_always_expires(settings):
    from django.core.cache import cache

    settings.LOGIN_FAILURE_WINDOW = 120
    login_limit.begin(None, "alice")
    client = cache._cache.get_client(write=True)
    key = cache.make_and_validate_key(login_limit._key("user", "alice"))
    assert int(client.get(key)) == 1
    assert 0 < client.ttl(key) <= 120
    client.persist(key)  # even a counter that lost its expiry gets one back
    assert isinstance(login_limit.begin(None, "alice"), login_limit.Attempt)
    assert 0 < client.ttl(key) <= 120


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_wrong_passwords_get_at_most_the_limit_of_password_checks(monkeypatch, settings):
    settings.LOGIN_MAX_FAILURES = 5
    make_user("alice")
    checks, lock = [], threading.Lock()
    original = AbstractBaseUser.check_password

    def counting(self, raw_password):
        with lock:
            checks.append(raw_password)
        return original(self, raw_password)

    monkeypatch.setattr(AbstractBaseUser, "check_password", counting)
    statuses = race(20, lambda i: wrong(Client()).status_code)
    assert len(checks) <= 5
    assert statuses.count(429) >= 15
    assert Client().post("/login/", {"username": "alice", "password": RIGHT}).status_code == 429


def test_a_new_password_lifts_the_lock_out(client, agent, settings, private_cache):
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    settings.LOGIN_MAX_FAILURES = 2
    for _ in range(3):
        wrong(client)
    assert client.post("/login/", {"username": "alice", "password": RIGHT}).status_code == 429
    uid = urlsafe_base64_encode(force_bytes(agent.pk))
    response = client.get(f"/password-reset/{uid}/{default_token_generator.make_token(agent)}/", follow=True)
    response = client.post(response.redirect_chain[-1][0], {"new_password1": "Sunny-teppanyaki-42",
                                                            "new_password2": "Sunny-teppanyaki-42"})
    assert response.status_code == 302
    assert client.post("/login/", {"username": "alice", "password": "Sunny-teppanyaki-42"}).status_code == 302
