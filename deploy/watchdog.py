"""The cluster's active health check: nginx's upstream follows each node's /ready (issue 16).

    python -m deploy.watchdog STATE_DIR     (deploy/cluster start runs it; pid file watchdog.pid)

Open-source nginx only learns that a node is gone from failed requests
(passive health), and never reads /ready. This process probes every node's
/ready on its own port every INTERVAL seconds. A node is failing after
FAILURES probes in a row that did not answer 200 (a timeout, a 503, a 500),
or at once when its port refuses the connection (the process is gone). Then
the watchdog creates STATE_DIR/NODE.down and calls Cluster.reload_nginx(),
the same rendering drain and undrain use: the upstream lists every drained or
`.down` node as `down`, and nginx reloads gracefully. The first 200 removes
the file and reloads again. When every node still running fails at once, a
part they share is down (PostgreSQL, Redis): none is taken out (and any taken
out before is put back), so clients get the nodes' own answers, not nginx's
"no live upstreams".

A drained node (NODE.drain) is left alone: it is `down` for its drain file,
and stays so until `deploy/cluster undrain` (which also removes a stale
`.down`). The watchdog never touches drain files, so it never undoes an
operator's drain, and a rolling restart (drain first) is not seen as a failure.

Only the standard library and deploy/cluster.py; it reads the cluster's
ports and paths from STATE_DIR/cluster.json (Cluster.save()).
"""
import signal
import sys
import time

from deploy.cluster import Cluster, get, progress

INTERVAL = 2.0  # seconds between two rounds of probes
FAILURES = 2  # non-200 answers in a row that take a node out
PROBE_TIMEOUT = 1.5  # a stopped (SIGSTOP) or wedged node times out: one failure


def probe(cluster, node):
    """'ok' (200), 'refused' (nothing listens: the process is gone) or 'failed' (anything else)."""
    try:
        status = get(f"http://127.0.0.1:{cluster.nodes[node]}/ready", timeout=PROBE_TIMEOUT)[0]
    except Exception as exc:  # timeouts, resets, URLError wrapping them, broken answers
        if isinstance(exc, ConnectionRefusedError) or isinstance(getattr(exc, "reason", None),
                                                                 ConnectionRefusedError):
            return "refused"
        return "failed"
    return "ok" if status == 200 else "failed"


class Watchdog:
    def __init__(self, cluster, *, interval=INTERVAL, failures=FAILURES, log=progress):
        self.cluster = cluster
        self.interval = interval
        self.failures = failures
        self.log = log
        self.failed = {node: 0 for node in cluster.nodes}
        self.stopping = False

    def check(self):
        """One round of probes; reloads nginx (once) when a node goes out or comes back."""
        changed = []
        drained = self.cluster.drained()
        results = {node: probe(self.cluster, node) for node in self.cluster.nodes if node not in drained}
        for node in drained:  # the operator's; not ours to judge
            self.failed[node] = 0
        for node, result in results.items():
            self.failed[node] = 0 if result == "ok" else self.failed[node] + 1
        # Every node that still runs fails /ready at once: a part they share is down (PostgreSQL
        # restarting, Redis stopped), not the nodes. Taking them all out would turn the nodes'
        # honest answers (a 503 "try again shortly", or pages served without Redis) into nginx's
        # "no live upstreams" 502 for everything; so they stay in (docs/operations.md).
        running = [node for node, result in results.items() if result != "refused"]
        shared = bool(running) and all(results[node] != "ok" for node in running)
        if shared and any(self.failed[node] == self.failures for node in running):
            self.log(f"watchdog: every running node fails /ready ({', '.join(running)}): a shared part is down; "
                     "keeping them in the upstream")
        for node, result in results.items():
            marked = self.cluster.down_file(node).exists()
            healthy = result == "ok" or (shared and result != "refused")
            if healthy:
                if marked:
                    self.cluster.down_file(node).unlink(missing_ok=True)
                    changed.append(f"{node} is ready again: back in the upstream" if result == "ok" else
                                   f"{node} back in the upstream: every running node fails alike")
                continue
            if not marked and (result == "refused" or self.failed[node] >= self.failures):
                self.cluster.down_file(node).touch()
                changed.append(f"{node} failed /ready ({result}, {self.failed[node]} in a row): marked down")
        for line in changed:
            self.log(f"watchdog: {line}")
        if changed and self.cluster.pid("nginx"):
            self.cluster.reload_nginx()
        return changed

    def run(self):
        self.log(f"watchdog: probing {', '.join(self.cluster.nodes)} every {self.interval:g} s")
        while not self.stopping:
            started = time.monotonic()
            try:
                self.check()
            except (Exception, SystemExit) as exc:  # keep watching; the next round tries again
                self.log(f"watchdog: round failed: {exc}")
            deadline = started + self.interval
            while not self.stopping and (left := deadline - time.monotonic()) > 0:
                time.sleep(min(0.1, left))
        self.log("watchdog: stopped")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m deploy.watchdog STATE_DIR")
    watchdog = Watchdog(Cluster.load(argv[0]))

    def stop(signum, frame):
        watchdog.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watchdog.run()


if __name__ == "__main__":
    main()
