"""Benchmark: the cost of presence ("who views, who types") at 200 agents, on two nodes.

    .venv/bin/python bench/bench_presence.py [--agents 200] [--per-conversation 5] [--seconds 20]

Two ASGI nodes (uvicorn, as production runs them; tests/browser/live_server.py) share
PostgreSQL (BENCH_DATABASE_URL, default .../bench_presence, created and migrated if missing)
and Redis (REDIS_URL) with a run-specific prefix. --agents staff users each open one staff
socket, alternately on node 1 and node 2, and watch a conversation with --per-conversation
others (so every presence frame crosses nodes). Two phases of --seconds each:

1. viewing: every socket sends presence.watch every 5 s (presence.HEARTBEAT), nothing else;
2. typing: on top of that every agent types non-stop, as the page throttles it: a
   presence.typing every 2 s (presence.TYPING_THROTTLE), alternately true and false so that
   every one of them changes the state and is broadcast (the worst case; a real typist's
   repeats are not broadcast).

Measured per phase: presence messages sent per second, frames received per second, fan-out
latency (send by one agent -> the frame showing the change arriving at each other watcher
of that conversation; sender and receivers live in this process, one clock), p50/p95/p99,
the nodes' CPU (user+system from /proc, both nodes, as % of one core), and Redis commands
per second (INFO's total_commands_processed: the whole Redis server, so whatever else uses
it counts too; an upper bound). The socket clients run in this process (asyncio,
websockets), so their own scheduling is inside the latency: an upper bound as well.

Prints a table and writes bench/results/presence.json.
"""
import asyncio
import json
import os
import random
import time

import common
from common import ROOT

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_presence")
os.environ.setdefault("LIVE_CHANNEL_PREFIX", f"benchp{os.getpid()}:asgi")

from bench_screens import REDIS_URL, ensure_database  # noqa: E402 (sets the environment first)

cpu_seconds = common.cpu_seconds


def redis_commands() -> int:
    import redis

    return int(redis.from_url(REDIS_URL).info("stats")["total_commands_processed"])


def setup(agents: int, per_conversation: int):
    """Users, their session cookies and one conversation per --per-conversation agents."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from inbox import services
    from tests.factories import make_user

    User = get_user_model()
    cookies, watch = [], []
    conversations = []
    for n in range(-(-agents // per_conversation)):
        received = services.receive_message(channel="email", sender=f"guest{n}@example.com", text="Saturday?",
                                            external_id=f"bench-presence-{n}")
        conversations.append(received.message.conversation_id)
    for n in range(agents):
        name = f"bench-presence-{n}"
        # No password (no hashing): they log in by session cookie.
        user = User.objects.filter(username=name).first() or make_user(name, first_name=f"Agent {n}", password=None)
        client = Client()
        client.force_login(user)
        cookies.append(f"sessionid={client.cookies['sessionid'].value}")
        watch.append(conversations[n // per_conversation])
    return [User.objects.get(username=f"bench-presence-{n}").pk for n in range(agents)], cookies, watch


class Agent:
    def __init__(self, user_id, cookie, conversation, url):
        self.user_id, self.cookie, self.conversation, self.url = user_id, cookie, conversation, url
        self.ws = None
        self.seen = {}  # user -> typing, as this socket last saw it
        self.typing = False

    async def connect(self):
        import websockets

        self.ws = await websockets.connect(self.url, origin="http://127.0.0.1",
                                           additional_headers={"Cookie": self.cookie}, compression=None)


class Run:
    def __init__(self):
        self.sent = 0
        self.frames = 0
        self.latencies = []
        self.last_change = {}  # user -> (typing, sent at)
        self.measuring = False

    async def read(self, agent: Agent):
        async for raw in agent.ws:
            frame = json.loads(raw)
            if frame.get("type") != "presence":
                continue
            now = time.time()
            if self.measuring:
                self.frames += 1
            for viewer in frame["viewers"]:
                before = agent.seen.get(viewer["user"])
                agent.seen[viewer["user"]] = viewer["typing"]
                change = self.last_change.get(viewer["user"])
                if (self.measuring and before is not None and before != viewer["typing"] and change
                        and change[0] == viewer["typing"] and viewer["user"] != agent.user_id):
                    self.latencies.append((now - change[1]) * 1000)

    async def send(self, agent: Agent, message: dict):
        if message["type"] == "presence.typing":
            self.last_change[agent.user_id] = (message["typing"], time.time())
        await agent.ws.send(json.dumps(message))
        if self.measuring:
            self.sent += 1


async def heartbeats(run, agent, stop):
    await asyncio.sleep(random.uniform(0, 5))  # pages open at different moments
    while not stop.is_set():
        await run.send(agent, {"type": "presence.watch", "conversation": agent.conversation})
        await asyncio.sleep(5)


async def typist(run, agent, stop):
    await asyncio.sleep(random.uniform(0, 2))
    while not stop.is_set():
        agent.typing = not agent.typing
        await run.send(agent, {"type": "presence.typing", "typing": agent.typing})
        await asyncio.sleep(2)


async def phase(run, agents, nodes, seconds, *, typing):
    stop = asyncio.Event()
    tasks = [asyncio.create_task(heartbeats(run, a, stop)) for a in agents]
    if typing:
        tasks += [asyncio.create_task(typist(run, a, stop)) for a in agents]
    await asyncio.sleep(5)  # every loop started, one heartbeat round done
    run.sent = run.frames = 0
    run.latencies = []
    cpu = [cpu_seconds(n.process.pid) for n in nodes]
    commands = redis_commands()
    started = time.monotonic()
    run.measuring = True
    await asyncio.sleep(seconds)
    run.measuring = False
    elapsed = time.monotonic() - started
    cpu = [(cpu_seconds(n.process.pid) - c) / elapsed * 100 for n, c in zip(nodes, cpu)]
    commands = (redis_commands() - commands) / elapsed
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = run.latencies
    return {
        "seconds": round(elapsed, 1),
        "messages_per_second": round(run.sent / elapsed, 1),
        "frames_per_second": round(run.frames / elapsed, 1),
        "changes_observed": len(lat),
        "fanout_ms": common.percentiles(lat, digits=2),
        "node_cpu_percent": [round(c, 1) for c in cpu],
        "redis_commands_per_second": round(commands),
    }


async def measure(args, users, cookies, watch, nodes):
    agents = [Agent(u, c, w, nodes[n % 2].ws_url) for n, (u, c, w) in enumerate(zip(users, cookies, watch))]
    for start in range(0, len(agents), 20):
        await asyncio.gather(*(a.connect() for a in agents[start:start + 20]))
    run = Run()
    readers = [asyncio.create_task(run.read(a)) for a in agents]
    results = {"viewing": await phase(run, agents, nodes, args.seconds, typing=False),
               "typing": await phase(run, agents, nodes, args.seconds, typing=True)}
    for agent in agents:
        await agent.ws.close()
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return results


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--per-conversation", type=int, default=5, help="Agents watching each conversation.")
    parser.add_argument("--seconds", type=float, default=20, help="Length of each measured phase.")
    args = parser.parse_args()

    ensure_database(migrate=True)
    common.setup_django()
    from django.db import connection

    from tests.browser.live_server import LiveServer, database_url

    users, cookies, watch = setup(args.agents, args.per_conversation)
    prefix = os.environ["LIVE_CHANNEL_PREFIX"].removesuffix(":asgi")
    nodes = []
    try:
        for n in (1, 2):
            node = LiveServer(database_url=database_url(connection.settings_dict), redis_url=REDIS_URL, prefix=prefix,
                              server="uvicorn", log_path=ROOT / "test-artifacts" / f"presence-node{n}.log")
            nodes.append(node.start())
        results = asyncio.run(measure(args, users, cookies, watch, nodes))
    finally:
        for node in nodes:
            node.stop()

    print(f"\nPresence at {args.agents} agents on 2 uvicorn nodes, {args.per_conversation} per conversation, "
          f"{args.seconds:.0f} s per phase\n")
    common.print_table(
        ["phase", "msgs/s", "frames/s", "fan-out p50 ms", "p95", "p99", "node CPU %", "Redis cmd/s"],
        [[name, r["messages_per_second"], r["frames_per_second"],
          *([r["fanout_ms"][p] for p in ("p50", "p95", "p99")] if r["changes_observed"] else [None] * 3),
          " + ".join(f"{c:.1f}" for c in r["node_cpu_percent"]), r["redis_commands_per_second"]]
         for name, r in results.items()])
    common.write_result("presence.json" if args.agents == 200 else f"presence-{args.agents}.json",
                        {"agents": args.agents, "per_conversation": args.per_conversation, "nodes": 2,
                         "server": "uvicorn", "phases": results, "machine": common.machine()})


if __name__ == "__main__":
    main()
