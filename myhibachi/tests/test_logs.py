"""Request ids on every log line and in the response; LOG_FORMAT=json."""
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from myhibachi.logs import JsonFormatter, RequestIdFilter, clean_request_id

ROOT = Path(__file__).resolve().parents[2]
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture
def json_lines():
    """What the console handler of LOG_FORMAT=json would write, for this test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def test_the_request_id_is_on_the_log_lines_and_echoed(client, db, json_lines):
    response = client.get("/no/such/page", HTTP_X_REQUEST_ID="abc-123")

    assert response.status_code == 404
    assert response["X-Request-ID"] == "abc-123"
    lines = [line for line in json_lines() if line["logger"] == "django.request"]
    assert lines, json_lines()
    assert lines[0]["request_id"] == "abc-123"
    assert lines[0]["level"] == "WARNING"
    assert lines[0]["message"] == "Not Found: /no/such/page"
    assert set(lines[0]) == {"time", "level", "logger", "message", "request_id"}


def test_without_a_header_a_fresh_id_is_made(client, db, json_lines):
    first = client.get("/no/such/page")["X-Request-ID"]
    second = client.get("/no/such/page")["X-Request-ID"]
    assert UUID4.fullmatch(first) and UUID4.fullmatch(second) and first != second
    assert [line["request_id"] for line in json_lines() if line["logger"] == "django.request"] == [first, second]


@pytest.mark.parametrize("hostile", [
    "abc\nINFO forged line", "a" * 500, "a" * 65, "abc 123", "abc_123", "äbc", "abc\r\n", "<script>", "",
])
def test_a_hostile_request_id_is_replaced(client, db, json_lines, hostile):
    response = client.get("/no/such/page", HTTP_X_REQUEST_ID=hostile)
    echoed = response["X-Request-ID"]
    assert UUID4.fullmatch(echoed)
    assert [line["request_id"] for line in json_lines() if line["logger"] == "django.request"] == [echoed]


def test_what_is_kept():
    assert clean_request_id("a" * 64) == "a" * 64
    assert clean_request_id("0f3c9a7be1d24c55a0e6b1f0d2c3e4f5") == "0f3c9a7be1d24c55a0e6b1f0d2c3e4f5"  # nginx
    assert clean_request_id("abc-123\n") != "abc-123\n"
    assert UUID4.fullmatch(clean_request_id(None))


def test_outside_a_request_there_is_no_id(json_lines):
    logging.getLogger("myhibachi.test").warning("from a command")
    assert json_lines()[-1]["request_id"] is None


def test_an_exception_stays_on_one_line(json_lines):
    try:
        raise ValueError("bad thing\nsecond line")
    except ValueError:
        logging.getLogger("myhibachi.test").exception("it failed")
    line = json_lines()[-1]
    assert line["message"] == "it failed"
    assert "Traceback" in line["exception"] and "ValueError: bad thing\nsecond line" in line["exception"]


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_the_async_path_sets_and_echoes_the_id(async_client, json_lines):
    # Nodes run under ASGI: the middleware's async path; the sync view runs in a thread.
    response = await async_client.get("/no/such/page", headers={"X-Request-ID": "async-42"})
    assert response["X-Request-ID"] == "async-42"
    assert [line["request_id"] for line in json_lines() if line["logger"] == "django.request"] == ["async-42"]


def test_log_format_unset_keeps_the_plain_format():
    assert os.environ.get("LOG_FORMAT") in (None, "", "plain")
    assert django_settings.LOGGING["handlers"]["console"]["formatter"] == "plain"
    assert django_settings.LOGGING["formatters"]["plain"]["format"] == "%(asctime)s %(levelname)s %(name)s %(message)s"


SNIPPET = """
import logging, django
django.setup()
log = logging.getLogger("myhibachi.snippet")
log.info("hello %s", "there")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("broke")
"""


def _run(log_format):
    env = {k: v for k, v in os.environ.items() if k != "LOG_FORMAT"}
    env.update(DJANGO_SETTINGS_MODULE="myhibachi.settings", DEBUG="1")
    if log_format is not None:
        env["LOG_FORMAT"] = log_format
    return subprocess.run([sys.executable, "-c", SNIPPET], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_log_format_json_writes_one_object_per_line():
    result = _run("json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["logger"], line["level"], line["message"]) for line in lines] == [
        ("myhibachi.snippet", "INFO", "hello there"), ("myhibachi.snippet", "ERROR", "broke")]
    assert lines[0]["request_id"] is None and "exception" not in lines[0]
    assert "ZeroDivisionError" in lines[1]["exception"]


def test_log_format_plain_by_default():
    result = _run(None)
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO myhibachi\.snippet hello there", first)


def test_an_unknown_log_format_stops_start_up():
    result = _run("xml")
    assert result.returncode != 0
    assert "LOG_FORMAT must be plain or json" in result.stderr


def test_a_line_logged_inside_a_view_carries_the_id(client, db, settings, json_lines):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # /ready logs a warning from inside the view
    response = client.get("/ready", HTTP_X_REQUEST_ID="ready-7")
    assert response.status_code == 503
    lines = [line for line in json_lines() if line["logger"] == "myhibachi.health"]
    assert lines and {line["request_id"] for line in lines} == {"ready-7"}


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_a_sync_view_under_asgi_sees_the_id(async_client, settings, json_lines):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = await async_client.get("/ready", headers={"X-Request-ID": "ready-8"})
    assert response.status_code == 503 and response["X-Request-ID"] == "ready-8"
    lines = [line for line in json_lines() if line["logger"] == "myhibachi.health"]
    assert lines and {line["request_id"] for line in lines} == {"ready-8"}
