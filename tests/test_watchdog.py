"""The watchdog's rules, probe by probe (deploy/watchdog.py); the real thing is in tests/cluster/.

A node failing alone is taken out; every running node failing at once (a shared part down:
PostgreSQL restarting, Redis stopped) takes none out, so clients keep the nodes' own answers."""
import pytest

from deploy import watchdog as watchdog_module
from deploy.cluster import Cluster


@pytest.fixture
def cluster(tmp_path):
    # No nginx.pid in tmp_path: the watchdog rewrites nothing, only the .down files.
    return Cluster(tmp_path, database_url="postgres://unused/x", redis_url="redis://unused/0",
                   node_ports=(18001, 18002))


def rounds(cluster, monkeypatch, *answers):
    """Run one check per {node: probe result}; the .down files after each."""
    dog = watchdog_module.Watchdog(cluster, log=lambda line: None)
    seen = []
    for answer in answers:
        monkeypatch.setattr(watchdog_module, "probe", lambda _cluster, node, answer=answer: answer[node])
        dog.check()
        seen.append({node for node in cluster.nodes if cluster.down_file(node).exists()})
    return seen


def test_a_node_failing_alone_goes_out_after_two_probes_and_comes_back(cluster, monkeypatch):
    bad = {"node1": "failed", "node2": "ok"}
    good = {"node1": "ok", "node2": "ok"}
    assert rounds(cluster, monkeypatch, bad, bad, good) == [set(), {"node1"}, set()]


def test_every_node_failing_at_once_takes_none_out(cluster, monkeypatch):
    down = {"node1": "failed", "node2": "failed"}
    assert rounds(cluster, monkeypatch, down, down, down) == [set(), set(), set()]


def test_a_node_taken_out_first_comes_back_when_the_other_fails_too(cluster, monkeypatch):
    # node1 loses the race to notice the shared outage; once node2 fails alike, node1 is put back.
    one = {"node1": "failed", "node2": "ok"}
    both = {"node1": "failed", "node2": "failed"}
    assert rounds(cluster, monkeypatch, one, one, both, both) == [set(), {"node1"}, set(), set()]


def test_a_dead_node_goes_out_even_when_the_other_fails_too(cluster, monkeypatch):
    answers = {"node1": "refused", "node2": "failed"}
    assert rounds(cluster, monkeypatch, answers, answers) == [{"node1"}, {"node1"}]


def test_the_only_node_left_after_a_drain_is_never_taken_out(cluster, monkeypatch):
    cluster.drain_file("node2").touch()
    answers = {"node1": "failed"}
    assert rounds(cluster, monkeypatch, answers, answers, answers) == [set(), set(), set()]
