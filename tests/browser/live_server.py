"""A real ASGI server of the app (daphne or uvicorn in its own process) for browser tests,
the cross-process socket test and the bench.

It serves the test database (PostgreSQL, shared across processes) and uses
channels-redis with a run-specific prefix, so events raised in any process
reach sockets connected to it.
"""
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(db_settings=None) -> str:
    d = db_settings or connection.settings_dict
    auth = d["USER"] or "postgres"
    if d.get("PASSWORD"):
        auth += ":" + d["PASSWORD"]
    return f"postgres://{auth}@{d['HOST'] or '127.0.0.1'}:{d['PORT'] or 5432}/{d['NAME']}"


# The production command (myhibachi/asgi.py) on a loopback port.
UVICORN = ["-m", "uvicorn", "--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools",
           "--ws", "websockets-sansio", "--ws-per-message-deflate", "false", "--log-level", "warning",
           "--no-access-log", "myhibachi.asgi:application"]


class LiveServer:
    """server: "daphne" (as `manage.py runserver` serves) or "uvicorn" (as production does)."""

    def __init__(self, *, database_url: str, redis_url: str, prefix: str | None = None, log_path=None,
                 server: str = "daphne"):
        if server not in ("daphne", "uvicorn"):
            raise ValueError(f"unknown server {server!r}")
        self.server = server
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws/inbox"
        self.prefix = prefix or f"live{uuid.uuid4().hex[:10]}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.browser.live_settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "LIVE_CHANNEL_PREFIX": self.channel_prefix,
            "LIVE_CACHE_PREFIX": self.cache_prefix,
            "DEBUG": "1",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        if server == "uvicorn":  # as a production node runs (myhibachi/asgi.py)
            self.env["DB_POOL_SIZE"] = "4"
        self.env.pop("TEST_DATABASE_NAME", None)
        self.log_path = log_path
        self.process = None

    @property
    def channel_prefix(self):
        return f"{self.prefix}:asgi"

    @property
    def cache_prefix(self):
        return f"{self.prefix}:cache"

    def start(self, timeout=30):
        if self.log_path:
            Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        if self.server == "uvicorn":
            command = [*UVICORN, "--port", str(self.port)]
        else:
            command = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "myhibachi.asgi:application"]
        self.process = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.server} exited with {self.process.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.server} did not start listening in time")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def settings_overrides(self):
        """What the test process must use to share events and cached counts with the server."""
        layers = {"default": {**settings.CHANNEL_LAYERS["default"]}}
        layers["default"]["CONFIG"] = {**layers["default"].get("CONFIG", {}), "prefix": self.channel_prefix}
        caches = {"default": {**settings.CACHES["default"], "KEY_PREFIX": self.cache_prefix}}
        return {"CHANNEL_LAYERS": layers, "CACHES": caches}
