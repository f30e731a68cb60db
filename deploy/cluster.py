"""Two myhibachi nodes behind nginx on one machine (issue 16).

    deploy/cluster start            migrate, collectstatic, demo data once, two Uvicorn nodes,
                                    a Celery worker and beat, nginx (TLS on 8443, redirect on 8080)
    deploy/cluster stop             stops exactly the processes in .cluster/*.pid
    deploy/cluster status           which of them run, which node is drained
    deploy/cluster drain node1      /ready 503 on node1, nginx stops sending it new work
    deploy/cluster undrain node1    the reverse
    deploy/rolling-restart          drain, restart, put back: node1, then node2
    python -m deploy.watchdog DIR   (started by `start`) marks a failing node `down` in
                                    nginx's upstream and puts it back (deploy/watchdog.py)

`make cluster` / `make cluster-stop` call the first two. Everything the cluster
writes is under .cluster/ (git-ignored): pid files node1.pid, node2.pid,
worker.pid, beat.pid, nginx.pid, watchdog.pid, the logs, the rendered nginx.conf, the
self-signed certificate and the production SECRET_KEY, made once.

Only the standard library here; Django runs in the processes started (the
same Python: the project's virtualenv). The tests (tests/cluster/) drive the
same Cluster class on free ports with their own database.
"""
import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/myhibachi_cluster"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
# The production node command (myhibachi/asgi.py). A node told to stop (SIGTERM)
# stops accepting, lets requests in flight finish for up to this many seconds,
# closes its sockets (browsers reconnect, through nginx, to the other node).
GRACEFUL_SECONDS = 30
UVICORN = ["-m", "uvicorn", "myhibachi.asgi:application", "--host", "127.0.0.1", "--loop", "uvloop",
           "--http", "httptools", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false",
           "--no-access-log", "--timeout-graceful-shutdown", str(GRACEFUL_SECONDS)]
# What a pid file's process must be running, so a recycled pid is never signalled.
EXPECTED = {"node": "uvicorn", "worker": "celery", "beat": "celery", "nginx": "nginx",
            "watchdog": "deploy.watchdog"}


def progress(message):
    print(f"[cluster] {message}", flush=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own exited child, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid):
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(")")[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def get(url, timeout=2.0):
    """(status, headers, body) of a GET; TLS unverified (our own self-signed certificate)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"User-Agent": "deploy/cluster"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


class Cluster:
    def __init__(self, state_dir, *, database_url, redis_url, node_ports=(8001, 8002), http_port=8080,
                 https_port=8443, static_root=None, extra_env=None, python=sys.executable,
                 worker_processes=2, pool_size=8, email_max_message_bytes=None, worker_connections=4096):
        self.state = Path(state_dir).resolve()
        self.database_url = database_url
        self.redis_url = redis_url
        self.nodes = {f"node{i}": port for i, port in enumerate(node_ports, start=1)}
        self.http_port = http_port
        self.https_port = https_port
        self.static_root = Path(static_root or self.state / "static").resolve()
        self.extra_env = dict(extra_env or {})
        self.python = python
        self.worker_processes = worker_processes
        self.worker_connections = worker_connections
        self.pool_size = pool_size
        self.email_max_message_bytes = int(
            email_max_message_bytes or os.environ.get("EMAIL_MAX_MESSAGE_BYTES") or 50 * 1024 * 1024)
        self.nginx_dir = self.state / "nginx"
        self.nginx_conf = self.nginx_dir / "nginx.conf"
        self.processes = {}  # name -> Popen of what this object started (reaped when stopped)
        self.cert = self.state / "tls" / "cert.pem"
        self.key = self.state / "tls" / "key.pem"

    # --- paths and environment --------------------------------------------------
    def pid_file(self, name):
        return self.state / f"{name}.pid"

    def drain_file(self, node):
        return self.state / f"{node}.drain"

    def down_file(self, node):
        """Set by the watchdog while the node fails its /ready (deploy/watchdog.py)."""
        return self.state / f"{node}.down"

    def log_file(self, name):
        return self.state / f"{name}.log"

    # What another process (the watchdog) needs to render the same nginx.conf.
    SAVED = ("database_url", "redis_url", "http_port", "https_port", "worker_processes", "pool_size",
             "email_max_message_bytes", "worker_connections")

    def save(self):
        config = {name: getattr(self, name) for name in self.SAVED}
        config.update(node_ports=list(self.nodes.values()), static_root=str(self.static_root))
        (self.state / "cluster.json").write_text(json.dumps(config, indent=1) + "\n")

    @classmethod
    def load(cls, state_dir):
        """The Cluster that saved itself into state_dir (cluster.json), without its extra_env."""
        config = json.loads((Path(state_dir) / "cluster.json").read_text())
        return cls(state_dir, **config)

    @property
    def https_url(self):
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def secret_key(self):
        """The cluster's SECRET_KEY: made once, kept owner-only in .cluster/secret-key."""
        path = self.state / "secret-key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        key = secrets.token_urlsafe(50)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key

    def env(self, **more):
        origins = [f"https://{host}:{self.https_port}" for host in ("127.0.0.1", "localhost")]
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "myhibachi.settings",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CSRF_TRUSTED_ORIGINS": ",".join(origins),
            "TRUSTED_PROXIES": "127.0.0.1,::1",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "STATIC_ROOT": str(self.static_root),
            "EMAIL_MAX_MESSAGE_BYTES": str(self.email_max_message_bytes),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
            **more,
        }
        env.pop("TEST_DATABASE_NAME", None)
        if not env.get("SECRET_KEY"):
            env["SECRET_KEY"] = self.secret_key()
        return env

    def node_env(self, node):
        return self.env(NODE_NAME=node, NODE_DRAIN_FILE=str(self.drain_file(node)), DB_POOL_SIZE=str(self.pool_size))

    # --- preparing ----------------------------------------------------------------
    def manage(self, *args, env=None, capture=False):
        command = [self.python, "manage.py", *args]
        result = subprocess.run(command, cwd=ROOT, env=env or self.env(), text=True,
                                stdout=subprocess.PIPE if capture else None)
        if result.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed ({result.returncode})")
        return result.stdout

    def create_database(self):
        url = urllib.parse.urlsplit(self.database_url)
        if not url.scheme.startswith("postgres"):
            return
        import psycopg

        name = url.path.lstrip("/")
        admin = url._replace(path="/postgres").geturl().replace("postgres+psycopg://", "postgres://")
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                progress(f"creating database {name}")
                conn.execute(f'CREATE DATABASE "{name}"')

    def prepare(self, *, seed=True):
        self.state.mkdir(parents=True, exist_ok=True)
        progress(f"database {self.database_url}, redis {self.redis_url}")
        self.create_database()
        progress("migrating")
        self.manage("migrate", "--noinput", "-v", "0")
        progress(f"collecting static files into {self.static_root}")
        self.manage("collectstatic", "--noinput", "-v", "0")
        self._readable(self.static_root)
        logins = self.state / "demo-logins.txt"
        if seed and not logins.exists():
            progress("loading demo data (once; progress below)")
            # --print-logins sets well-known passwords: development mode for this one command.
            out = self.manage("seed_demo", "--print-logins", env=self.env(DEBUG="1"), capture=True)
            logins.write_text(out)

    def _readable(self, path):
        """nginx's workers (nobody, when the master runs as root) must reach the static files."""
        for folder in [path, *path.parents]:
            if not (folder.is_relative_to(self.state) or folder.is_relative_to(ROOT)) or folder in (ROOT.parent,):
                break
            mode = folder.stat().st_mode
            if mode & 0o005 != 0o005:
                folder.chmod(mode | 0o005)

    def ensure_certificate(self):
        if self.cert.exists() and self.key.exists():
            return
        progress("making a self-signed certificate for 127.0.0.1 and localhost")
        self.cert.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(self.key),
             "-out", str(self.cert)], check=True, capture_output=True)
        self.key.chmod(0o600)

    # --- processes ------------------------------------------------------------------
    def _spawn(self, name, command, env):
        log = open(self.log_file(name), "ab")
        try:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        self.pid_file(name).write_text(f"{process.pid}\n")
        self.processes[name] = process
        return process

    def pid(self, name):
        """The live pid of a cluster process, or None (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        kind = "node" if name in self.nodes else name
        if not _alive(pid) or EXPECTED[kind] not in _cmdline(pid):
            return None
        return pid

    def start_node(self, node, timeout=60):
        port = self.nodes[node]
        progress(f"starting {node} (Uvicorn) on 127.0.0.1:{port}")
        process = self._spawn(node, [self.python, *UVICORN, "--port", str(port)], self.node_env(node))
        self.wait_for(lambda: self.node_status(node, "/health") == 200, f"{node} to answer", timeout,
                      process=process)
        return process

    def node_status(self, node, path="/ready"):
        try:
            return get(f"http://127.0.0.1:{self.nodes[node]}{path}", timeout=2)[0]
        except OSError:
            return None

    def wait_for(self, condition, what, timeout, process=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if process is not None and process.poll() is not None:
                raise SystemExit(f"waiting for {what}: the process exited ({process.returncode}); "
                                 f"see {self.state}/*.log")
            time.sleep(0.1)
        raise SystemExit(f"gave up waiting for {what} after {timeout} s; see {self.state}/*.log")

    def start_worker(self):
        progress("starting the Celery worker")
        self._spawn("worker", [self.python, "-m", "celery", "-A", "myhibachi", "worker", "--loglevel", "INFO",
                               "--concurrency", "2", "--hostname", f"worker@{self.state.name}"], self.env())

    def start_watchdog(self):
        progress("starting the watchdog (probes each node's /ready every 2 s)")
        self.save()
        self._spawn("watchdog", [self.python, "-m", "deploy.watchdog", str(self.state)], self.env())

    def start_beat(self):
        progress("starting Celery beat (exactly one)")
        self._spawn("beat", [self.python, "-m", "celery", "-A", "myhibachi", "beat", "--loglevel", "INFO"],
                    self.env())

    def stop_process(self, name, timeout=GRACEFUL_SECONDS + 10):
        """SIGTERM (nginx: SIGQUIT, graceful) to the pid in the pid file; SIGKILL after timeout."""
        pid = self.pid(name)
        if pid is None:
            self.pid_file(name).unlink(missing_ok=True)
            return False
        progress(f"stopping {name} (pid {pid})")
        started_here = self.processes.pop(name, None)
        os.kill(pid, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            progress(f"{name} did not stop in {timeout} s: killing it")
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        if started_here is not None and started_here.pid == pid:
            started_here.wait()  # no zombie left behind in a long-lived caller (the tests)
        self.pid_file(name).unlink(missing_ok=True)
        return True

    # --- nginx ------------------------------------------------------------------------
    def render_nginx(self, down=()):
        servers = "\n".join(
            f"        server 127.0.0.1:{port} max_fails=3 fail_timeout=10s{' down' if node in down else ''};"
            for node, port in self.nodes.items())
        values = {
            "USER_LINE": "user nobody nogroup;" if os.geteuid() == 0 else "",
            "WORKER_PROCESSES": str(self.worker_processes),
            "WORKER_CONNECTIONS": str(self.worker_connections),
            "WORKER_RLIMIT_NOFILE": str(2 * self.worker_connections + 1024),
            "PID_FILE": str(self.pid_file("nginx")),
            "ERROR_LOG": str(self.nginx_dir / "error.log"),
            "ACCESS_LOG": str(self.nginx_dir / "access.log"),
            "TEMP_DIR": str(self.nginx_dir / "temp"),
            "UPSTREAM_SERVERS": servers,
            "LISTEN_ADDRESS": "127.0.0.1",
            "HTTP_PORT": str(self.http_port),
            "HTTPS_PORT": str(self.https_port),
            "HTTPS_PORT_SUFFIX": "" if self.https_port == 443 else f":{self.https_port}",
            "CERT_FILE": str(self.cert),
            "KEY_FILE": str(self.key),
            "CLIENT_MAX_BODY_SIZE": str(self.email_max_message_bytes + 1024 * 1024),
            "STATIC_ROOT": str(self.static_root),
        }
        text = TEMPLATE.read_text()
        for name, value in values.items():
            text = text.replace("{{" + name + "}}", value)
        if "{{" in text:
            raise SystemExit(f"nginx template: unrendered placeholder near {text[text.index('{{'):][:40]!r}")
        return text

    def drained(self):
        return {node for node in self.nodes if self.drain_file(node).exists()}

    def down(self):
        """The nodes rendered `down`: drained by hand, or failing in the watchdog's eyes."""
        return self.drained() | {node for node in self.nodes if self.down_file(node).exists()}

    @contextlib.contextmanager
    def nginx_lock(self):
        """One writer of nginx.conf at a time (deploy/cluster and the watchdog)."""
        self.nginx_dir.mkdir(parents=True, exist_ok=True)
        with open(self.nginx_dir / "render.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def write_nginx(self):
        temp = self.nginx_dir / "temp"
        temp.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the workers (nobody) buffer large bodies there
            shutil.chown(temp, "nobody", "nogroup")
        candidate = self.nginx_dir / "nginx.conf.new"
        candidate.write_text(self.render_nginx(down=self.down()))
        test = subprocess.run(self._nginx("-t", conf=candidate), capture_output=True, text=True)
        if test.returncode:
            raise SystemExit(f"nginx refused the rendered configuration:\n{test.stderr}")
        candidate.replace(self.nginx_conf)

    def _nginx(self, *args, conf=None):
        return [NGINX, "-p", str(self.nginx_dir), "-c", str(conf or self.nginx_conf),
                "-e", str(self.nginx_dir / "error.log"), *args]

    def start_nginx(self):
        progress(f"starting nginx: https on {self.https_port}, http (redirect) on {self.http_port}")
        with self.nginx_lock():
            self.write_nginx()
            subprocess.run(self._nginx(), check=True)  # the master daemonizes and writes nginx.pid
        self.wait_for(lambda: self.pid("nginx") is not None, "nginx's pid file", 10)
        self.wait_for(self._nginx_answers, "nginx to answer", 20)

    def _nginx_answers(self):
        try:
            return get(f"{self.https_url}/health", timeout=2)[0] in (200, 502, 503)
        except OSError:
            return False

    def reload_nginx(self):
        """Render again (drained and failing nodes `down`) and reload; returns once new workers serve.

        The one path that writes nginx.conf after start: drain, undrain and the watchdog all come here.
        """
        with self.nginx_lock():
            self.write_nginx()
            pid = self.pid("nginx")
            if pid is None:
                raise SystemExit("nginx is not running")
            before = _children(pid)
            os.kill(pid, signal.SIGHUP)
            # The master starts new workers, then tells the old ones to stop accepting;
            # they finish what they hold (at most worker_shutdown_timeout).
            self.wait_for(lambda: len(_children(pid) - before) >= self.worker_processes, "nginx's new workers",
                          10)
            time.sleep(0.5)

    # --- drain and rolling restart --------------------------------------------------
    def drain(self, node):
        self.drain_file(node).touch()
        self.wait_for(lambda: self.node_status(node) != 200, f"{node}'s /ready to fail", 10)
        progress(f"{node} is draining (/ready 503); nginx sends it no new work")
        if self.pid("nginx"):
            self.reload_nginx()

    def undrain(self, node):
        self.drain_file(node).unlink(missing_ok=True)
        self.wait_for(lambda: self.node_status(node) == 200, f"{node}'s /ready", 30)
        self.down_file(node).unlink(missing_ok=True)  # ready: the watchdog would agree
        progress(f"{node} is ready and back in nginx's upstream")
        if self.pid("nginx"):
            self.reload_nginx()

    def restart_node(self, node):
        others = [other for other in self.nodes if other != node]
        if any(self.node_status(other) != 200 for other in others):
            raise SystemExit(f"not restarting {node}: no other node is ready to take its work")
        self.drain(node)
        self.stop_process(node)  # waits for requests in flight (GRACEFUL_SECONDS)
        self.start_node(node)
        self.undrain(node)

    def rolling_restart(self):
        for node in self.nodes:
            progress(f"rolling restart: {node}")
            self.restart_node(node)
        progress("rolling restart done")

    # --- the whole cluster ------------------------------------------------------------
    def names(self):
        return [*self.nodes, "worker", "beat", "nginx", "watchdog"]

    def start(self, *, seed=True, celery=True):
        running = [name for name in self.names() if self.pid(name)]
        if running:
            raise SystemExit(f"already running: {', '.join(running)} (make cluster-stop first)")
        self.prepare(seed=seed)
        self.ensure_certificate()
        for node in self.nodes:
            self.drain_file(node).unlink(missing_ok=True)
            self.down_file(node).unlink(missing_ok=True)
            self.start_node(node)
        if celery:
            self.start_worker()
            self.start_beat()
        self.start_nginx()
        for node in self.nodes:
            self.wait_for(lambda node=node: self.node_status(node) == 200, f"{node}'s /ready", 30)
        self.start_watchdog()

    def stop(self):
        stopped = [name for name in ["watchdog", "nginx", *self.nodes, "worker", "beat"] if self.stop_process(name)]
        progress(f"stopped: {', '.join(stopped) or 'nothing was running'}")

    def status(self):
        for name in self.names():
            pid = self.pid(name)
            state = f"pid {pid}" if pid else "not running"
            if name in self.nodes:
                state += f", port {self.nodes[name]}, /ready {self.node_status(name)}"
                state += ", draining" if self.drain_file(name).exists() else ""
                state += ", down (watchdog)" if self.down_file(name).exists() else ""
            print(f"{name:8} {state}")

    def summary(self):
        print(f"""
myhibachi cluster is up ({self.state}):
  {self.https_url}/        the staff app through nginx (self-signed certificate: {self.cert})
  {self.http_url}/         redirects to https
  {self.https_url}/health  /ready  probes; each node directly: {', '.join(
            f'{n} http://127.0.0.1:{p}/ready' for n, p in self.nodes.items())}
  logs and pid files:           {self.state}/
  stop: make cluster-stop       rolling restart: deploy/rolling-restart
""")
        logins = self.state / "demo-logins.txt"
        if logins.exists():
            # seed_demo names the development server's address; the cluster's is this one.
            print(logins.read_text().strip().replace("http://127.0.0.1:8000/", f"{self.https_url}/"))


def from_environment():
    return Cluster(ROOT / ".cluster", database_url=os.environ.get("CLUSTER_DATABASE_URL")
                   or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
                   redis_url=os.environ.get("CLUSTER_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="deploy/cluster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start")
    start.add_argument("--no-seed", action="store_true", help="skip the demo data")
    sub.add_parser("stop")
    sub.add_parser("status")
    sub.add_parser("rolling-restart")
    for name in ("drain", "undrain"):
        sub.add_parser(name).add_argument("node", choices=["node1", "node2"])
    args = parser.parse_args(argv)
    cluster = from_environment()
    if args.command == "start":
        try:
            cluster.start(seed=not args.no_seed)
        except BaseException:
            progress("start failed: stopping what was started")
            cluster.stop()
            raise
        cluster.summary()
    elif args.command == "stop":
        cluster.stop()
    elif args.command == "status":
        cluster.status()
    elif args.command == "rolling-restart":
        cluster.rolling_restart()
    elif args.command == "drain":
        cluster.drain(args.node)
    elif args.command == "undrain":
        cluster.undrain(args.node)


if __name__ == "__main__":
    main()
