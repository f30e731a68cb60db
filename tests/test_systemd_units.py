"""The systemd unit examples in deploy/systemd/ parse, and start what the cluster starts (issue 16)."""
import configparser
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
from django.conf import settings

from deploy.cluster import GRACEFUL_SECONDS, ROOT, UVICORN

UNITS = ROOT / "deploy" / "systemd"
PYTHON = "/srv/myhibachi/.venv/bin/python"


def unit(name):
    parser = configparser.ConfigParser(interpolation=None, strict=False)  # Environment= may repeat
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


def argv(parser):
    return shlex.split(parser["Service"]["ExecStart"])


@pytest.mark.parametrize("name", sorted(path.name for path in UNITS.glob("*.service")))
def test_each_unit_has_its_sections_and_restarts_and_reads_the_env_file(name):
    parser = unit(name)
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    service = parser["Service"]
    assert service["EnvironmentFile"] == "/etc/myhibachi/env"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 0
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    command = argv(parser)
    assert command[0] == PYTHON and command[1] == "-m"
    assert importlib.util.find_spec(command[2]) is not None  # uvicorn / celery installed


def test_the_node_unit_runs_the_clusters_uvicorn_command_and_outlasts_its_graceful_shutdown():
    parser = unit("node@.service")
    assert argv(parser)[1:] == [*UVICORN, "--port", "800%i"]
    assert importlib.util.find_spec("myhibachi.asgi") is not None
    assert int(parser["Service"]["TimeoutStopSec"]) > GRACEFUL_SECONDS
    environment = (UNITS / "node@.service").read_text()
    for line in ("Environment=NODE_NAME=node%i", "Environment=NODE_DRAIN_FILE=/run/myhibachi/node%i.drain",
                 "Environment=DB_POOL_SIZE=8"):
        assert line in environment.splitlines()


def test_celery_units_run_the_project_app():
    worker, beat = unit("celery-worker.service"), unit("celery-beat.service")
    assert argv(worker)[2:6] == ["celery", "-A", "myhibachi", "worker"]
    assert argv(beat)[2:6] == ["celery", "-A", "myhibachi", "beat"]
    assert importlib.util.find_spec("myhibachi.celery") is not None
    # Warm shutdown lets a running task finish: longer than the longest task.
    assert int(worker["Service"]["TimeoutStopSec"]) > settings.CELERY_TASK_TIME_LIMIT


def test_the_example_environment_names_only_documented_variables_and_what_production_requires():
    names = [line.split("=", 1)[0] for line in (UNITS / "env.example").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    assert set(names) <= documented, set(names) - documented
    for required in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "TRUSTED_PROXIES",
                     "DATABASE_URL", "REDIS_URL", "STATIC_ROOT"):
        assert required in names
    operations = (ROOT / "docs" / "operations.md").read_text()
    for name in names + ["NODE_NAME", "NODE_DRAIN_FILE", "DB_POOL_SIZE"]:
        assert f"`{name}`" in operations, f"docs/operations.md does not list {name}"


def test_the_watchdog_unit_runs_the_clusters_watchdog_on_a_state_directory_it_may_write():
    parser = unit("watchdog.service")
    command = argv(parser)
    assert command[2] == "deploy.watchdog" and importlib.util.find_spec("deploy.watchdog") is not None
    assert len(command) == 4 and command[3].startswith("/")  # the state dir: cluster.json, nginx.conf
    service = parser["Service"]
    # ProtectSystem=strict makes everything read-only but what it rewrites: the rendered nginx.conf.
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"].split() == [command[3]]
    # It exits on SIGTERM within a round of probes (deploy/watchdog.py), well inside the stop timeout.
    from deploy import watchdog

    assert int(service["TimeoutStopSec"]) > watchdog.INTERVAL + 2 * watchdog.PROBE_TIMEOUT
    assert "watchdog.service" in (ROOT / "docs" / "operations.md").read_text()
