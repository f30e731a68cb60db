"""A Redis and a PostgreSQL of a test's own, on free loopback ports, for the fault tests.

Stopping or restarting them disturbs nothing else on the machine (the
developer's Redis and PostgreSQL, a running `make cluster`). Both keep their
files in a temporary folder and are stopped, and the folder removed, by stop().

PostgreSQL: initdb refuses to run as root, so as root the data directory is
given to the `postgres` OS user (Debian's package makes it) and initdb and
pg_ctl run as that user through runuser.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.browser.live_server import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _wait_listening(port, timeout, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="myhibachi-redis-"))
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        log = open(self.dir / "redis.log", "ab")
        try:
            self.process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.dir), "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        _wait_listening(self.port, 10, self.process)
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="myhibachi-pg-"))
        self.data = self.dir / "data"
        self.as_root = os.geteuid() == 0

    def url(self, name="postgres"):
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *command, check=True):
        command = [str(part) for part in command]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, stdin=subprocess.DEVNULL)

    def init(self):
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        return self

    def start(self):
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.dir / "postgres.log", "-o", options,
                  "-w", "-t", "30", "start")
        _wait_listening(self.port, 10)
        return self

    def stop(self, mode="fast"):
        if (self.data / "postmaster.pid").exists():
            self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "30", "stop", check=False)

    def close(self):
        self.stop(mode="immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
