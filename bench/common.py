"""What every benchmark here shares: the repository on sys.path, the environment Django starts
in, the command line, percentiles, the printed table, the machine's facts, the bench databases
and the JSON result file.

Each bench/bench_*.py imports it before anything of the project (importing it puts the
repository on sys.path). Percentiles are one definition for every figure: linear interpolation
between the closest ranks (numpy's default), NaN for no samples.
"""
import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- the command line and Django -------------------------------------------------------------

def parser(doc: str) -> argparse.ArgumentParser:
    """The script's command line, its --help being the module docstring as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def environment(settings_module: str = "myhibachi.settings", **values) -> None:
    """Defaults for the environment Django starts in; a value already set wins."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    os.environ.setdefault("DEBUG", "1")  # the settings refuse to start without DEBUG
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def setup_django(*, as_production: bool = False) -> None:
    """django.setup(). as_production: what timed requests should meet, as a node runs them: no query
    log (settings.DEBUG off) and the start-up heap frozen, as myhibachi/asgi.py does."""
    environment()
    import django

    django.setup()
    if as_production:
        import gc

        from django.conf import settings

        settings.DEBUG = False
        gc.collect()
        gc.freeze()


# --- figures ---------------------------------------------------------------------------------

def percentile(values, q: float) -> float:
    """The q-th percentile (0-100) of values, interpolated between the closest ranks; NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def percentiles(values, qs=(50, 95, 99), digits: int | None = None) -> dict:
    """{"p50": …, "p95": …, "p99": …} of values (rounded to digits when given)."""
    found = {f"p{q}": percentile(values, q) for q in qs}
    return {k: round(v, digits) for k, v in found.items()} if digits is not None else found


def print_table(header, rows) -> None:
    """Rows under a header, each column as wide as its widest cell: numbers right-aligned (floats
    with one decimal, NaN and None as "—"), text left-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(str(title))] + [len(row[i]) for row in cells]) for i, title in enumerate(header)]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
               for i in range(len(header))]

    def line(values):
        return "  ".join(v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric)).rstrip()

    top = line([str(title) for title in header])
    print(top)
    print("-" * len(top))
    for row in cells:
        print(line(row))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(value, budget, *, at_least: bool = False) -> str:
    """"ok" when value keeps to the budget (at most it; at_least: at least it), else "OVER"/"UNDER"."""
    if at_least:
        return "ok" if value >= budget else "UNDER"
    return "ok" if value <= budget else "OVER"


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of a live process (and, with children, of its live descendants:
    a Celery worker's pool)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    if children:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += cpu_seconds(int(child), children=True)
    return total


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, every core and process (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_of(name: str) -> float:
    """CPU seconds so far of every process with this command name (postgres, redis-server), ended
    children included (a PostgreSQL backend's CPU lands in the postmaster's when it exits)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        if text[text.index("(") + 1:text.rindex(")")] == name:
            fields = text.rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return total


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def cpu_probe_ms() -> float:
    """How fast a core is now: the best of five runs of a fixed pure-Python loop (ms). Machines of one
    kind differ, and one machine varies too (seen here: ten times this loop took 1.5 to 3.4 s within
    minutes, nothing else running), so a result is only compared with one measured at a similar probe."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def machine(**extra) -> dict:
    """The facts a result is read with: the day, Python, cores, the load (other people share the
    machine) and the speed of a core (cpu_probe_ms)."""
    return {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_1m": load_average(), "cpu_probe_ms": cpu_probe_ms(), **extra}


def write_result(name: str, data: dict) -> Path:
    """Write data as bench/results/<name> (JSON) and say so."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / name
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")
    return out


# --- databases -------------------------------------------------------------------------------

def _admin_url(url: str) -> tuple[str, str]:
    """(the database's name, the URL of the server's postgres database)."""
    base, name = url.rsplit("/", 1)
    return name, f"{base}/postgres"


def database_exists(url: str) -> bool:
    import psycopg

    name, admin = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone())


def ensure_database(url: str, *, reseed: bool = False) -> None:
    """Create the bench database at url when missing; reseed: drop it first."""
    import psycopg

    name, admin = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and reseed:
            conn.execute(f'DROP DATABASE "{name}"')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def require_postgres() -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("Set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test (the bench makes its own database).")


@contextlib.contextmanager
def throwaway_database():
    """A fresh, migrated test database beside DATABASE_URL's (Django's test_<name>, or
    TEST_DATABASE_NAME), this process connected to it; yields its URL for worker processes and
    drops it afterwards."""
    from django.db import connection

    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    try:
        yield f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"
    finally:
        connection.creation.destroy_test_db(name, verbosity=0)
