"""A throwaway Dovecot IMAP server on a free loopback port, with its own
config, state and maildir in a temporary folder (Debian's dovecot-imapd).
Used by the tests (session fixture) and by bench/bench_email.py."""
import imaplib
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

USER = "user@example.test"
PASSWORD = "secret"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
first_valid_gid = 1
mail_fsync = never
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group() -> str:
    import grp

    for name in ("nogroup", "nobody"):
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            continue
    return "nogroup"


class Dovecot:
    def __init__(self, root):
        self.root = Path(root)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.config = self.root / "dovecot.conf"

    def start(self):
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        shutil.chown(self.root / "mail", "nobody", _group())
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        self.config.write_text(CONFIG.format(root=self.root, port=self.port).replace("nogroup", _group()))
        # The master daemonises; its children must not hold our pipes open, so errors go to a file.
        with open(self.root / "start.err", "wb") as err:
            started = subprocess.run([DOVECOT, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=err,
                                     timeout=30)
        if started.returncode != 0:
            raise RuntimeError(f"dovecot failed: {(self.root / 'start.err').read_text()}\n{self.log()}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"Dovecot did not start; log:\n{self.log()}")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def stop(self):
        subprocess.run([DOVEADM, "-c", str(self.config), "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)

    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.host, self.port, timeout=30)
        conn.login(USER, PASSWORD)
        return conn

    def new_folder(self, prefix="t") -> str:
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        conn = self.client()
        try:
            typ, data = conn.create(name)
            assert typ == "OK", data
        finally:
            conn.logout()
        return name

    def append(self, folder: str, *raws: bytes) -> None:
        conn = self.client()
        try:
            for raw in raws:
                typ, data = conn.append(folder, None, None, raw)
                assert typ == "OK", data
        finally:
            conn.logout()
