"""The dashboard's areas, computed once per state of the rollups they read.

Each refresh that writes rollups gives the part it wrote a new random generation
(RefreshState.generation: "revenue" for the booking rollups, "conversations" for the history
rollups), in the same transaction as the rows. An area's figures are cached under the
generations of the parts it reads, with the range, the agent and the local date, so:

- a cached figure is never older than the rollups: a read takes the generations first, inside
  its transaction; once a refresh's rows are committed so is its generation, and every later read
  looks under a key nothing was computed for yet (what was computed from older rows was stored
  under the older generation, which no later read asks for);
- the generation is random, not a counter, so a database restored from a backup or a test's
  rolled-back transaction never meets an entry computed from other rows.

An area's figures here are those the dashboard shows: the sorts behind the figures it does not
(metrics.BRIEF: business-hours durations, first response by channel, the order value median) are
not run for it; the API, its CSV and the PDF report read every figure.

Only areas read wholly from rollups are cached: revenue, bookings and customers ("revenue"
part), staff and inbox ("conversations" part). Names are added after the cache (agents' names,
lost reasons' names: managers can rename them without a refresh). Pace and cash depend on the
instant (the books as of now, today's events split by the hour), email and chatbot read their
own tables, leads adds marketing spend: those are computed on every load, as before.

The areas a load has to compute run in two lanes on two connections of one snapshot
(parallel.together). After a refresh that wrote, a Celery task computes the cached areas of
every preset range (warm(), analytics/tasks.py), so the next manager's load finds them.
"""
import hashlib
import inspect
from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.core.cache import cache

from . import metrics, narrowing, parallel, percentiles, rollups, timebase
from .models import RefreshState

TIMEOUT = 24 * 3600  # entries are also replaced by every refresh that writes; this only bounds memory

# area: (what is cached, what makes it the area's answer, the parts of the rollups it reads)
# The dashboard's figures: without those it does not show (metrics.BRIEF).
CACHED = {
    "revenue": (lambda rng, agent_id, today: metrics.revenue(rng), None, ("revenue",)),
    "bookings": (lambda rng, agent_id, today: metrics.bookings_figures(rng, brief=True), metrics.with_reason_names,
                 ("revenue",)),
    "customers": (lambda rng, agent_id, today: metrics.customers(rng, today=today), None, ("revenue",)),
    "staff": (lambda rng, agent_id, today: metrics.staff_figures(rng, agent_id=agent_id, brief=True),
              metrics.with_agent_names, ("conversations",)),
    "inbox": (lambda rng, agent_id, today: metrics.inbox(rng, brief=True), None, ("conversations",)),
}


def _code_hash() -> str:
    """The code the figures are computed with: a deploy that changes it reads new keys. Without the
    sources (a deploy of compiled files only) the modules' bytecode stands in for them."""
    parts = []
    for module in (metrics, narrowing, percentiles, rollups, timebase):
        try:
            parts.append(inspect.getsource(module).encode())
        except OSError:
            parts.append(repr([f.__code__.co_code for f in vars(module).values()
                               if inspect.isfunction(f)]).encode())
    return hashlib.sha256(b"".join(parts)).hexdigest()[:16]


_code = _code_hash()


def generations() -> dict:
    """{part: generation} as committed now; a part never written is absent."""
    return {name: g for name, g in RefreshState.objects.filter(name__in=["revenue", "conversations"])
            .values_list("name", "generation") if g}


def _key(area, rng, agent_id, today, found):
    parts = CACHED[area][2]
    if any(p not in found for p in parts):
        return None
    stamp = ".".join(str(found[p]) for p in parts)
    return (f"analytics:figures:{_code}:{_settings_hash()}:{area}:{rng.start}:{rng.end}:{rng.interval}:"
            f"{agent_id or ''}:{today}:{stamp}")


def _settings_hash() -> str:
    keys = ("BUSINESS_TIME_ZONE", "BUSINESS_HOURS", "BUSINESS_HOLIDAYS", "CHURN_DAYS",
            "FIRST_RESPONSE_TARGET_MINUTES", "ANALYTICS_CONVERSION_WINDOW_DAYS")
    return hashlib.sha256(repr([(k, _plain(getattr(settings, k))) for k in keys]).encode()).hexdigest()[:12]


def _plain(value):
    if isinstance(value, dict):
        return sorted((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return value


# Each area's time to compute (bench_analytics.py's machine and scale, a year by month, read in turn;
# ms): how the reads of the areas a load computes are packed into two lanes (staff gives lanes of its
# own: metrics.STAFF_COST_MS). Only their proportions matter.
COST_MS = {"customers": 44, "bookings": 20, "inbox": 13, "pace": 9, "leads": 8, "revenue": 7, "cash": 7,
           "email": 4, "chatbot": 2}


# Areas read as lanes of their own (parallel.Split), packed with the others' reads.
SPLIT = {"staff": lambda rng, agent_id: metrics.staff_split(rng, agent_id=agent_id, brief=True)}


def _compute(names, rng, agent_id, today) -> dict:
    """{name: its figures}, read side by side where parallel.together() can."""
    splits = [SPLIT[name](rng, agent_id) if name in SPLIT
              else parallel.single(lambda name=name: _figures(name, rng, agent_id, today), COST_MS.get(name, 10))
              for name in names]
    return dict(zip(names, parallel.gather(splits)))


def _figures(name, rng, agent_id, today):
    return CACHED[name][0](rng, agent_id, today) if name in CACHED else metrics.METRICS[name](rng)


def areas(names, rng, *, agent_id=None):
    """{area: its figures} for these dashboard areas over the range: cached ones from the cache when
    the rollups they read have not been written since (computed and stored otherwise), the others
    computed. Call inside rollups.reading(), after any refresh the page runs first."""
    today = timebase.local_date(datetime.now(dt_timezone.utc))
    found = generations()
    keys = {}
    for name in names:
        if name in CACHED:
            key = _key(name, rng, agent_id, today, found)
            if key:
                keys[name] = key
    hits = cache.get_many(list(keys.values())) if keys else {}
    computed = _compute([name for name in names if keys.get(name) not in hits], rng, agent_id, today)
    out, fresh = {}, {}
    for name in names:
        if name not in CACHED:
            out[name] = computed[name]
            continue
        finish, key = CACHED[name][1], keys.get(name)
        if key in hits:
            figures = hits[key]
        else:
            figures = computed[name]
            if key:
                fresh[key] = figures
        out[name] = finish(figures) if finish else figures
    if fresh:
        cache.set_many(fresh, TIMEOUT)
    return out


def warm(ranges) -> None:
    """The cached areas of a manager's dashboard for these ranges, computed and stored where the cache
    has none for the rollups as they are now (what the task chained to a refresh that wrote runs:
    analytics/tasks.py), so the next manager's load finds them; a second run computes nothing."""
    for rng in ranges:
        with rollups.reading():
            areas(list(CACHED), rng)
