"""`dialer bench web`: screen pops to hundreds of agents' pages, and the supervisors' live feed.

The pages are the real app (dialer.web) served from this process's event loop over a real
socket, around a campaign engine that is built but not dialling; the store is a real SQLite file
with a sample portfolio. The browsers are real WebSocket clients (the `websockets` library),
signed in through POST /api/login, all held by a second process (this module run with
`python -m dialer.bench_web`) so that their CPU is not the server's. The two processes talk in
JSON lines over the child's stdin and stdout.

Part 1, screen pops: the agents take calls in waves (`--wave` connected at once, a busy minute's
worth), each agent one call with the case read when the debtor answers (`call_answered`, then
`call_connected` `--gap-ms` later: the product's path) and one without (`call_connected` alone:
cold). The latency is from the connection (wall clock in the server, just before the engine
would tell the agent pool and the pops) to the page receiving the pop (wall clock in the
browsers' process; one machine, one clock). The baseline, in the same waves: a tiny message
pushed to each page through the same hub (`Hub.to_agent`). The pops are also given as ratios
against it, as the machine is shared and its speed varies from run to run. The server's full
garbage collections stop its loop, so they are timed too (and one is asked for, with every page
open); `--freeze` moves the point where the server calls gc.freeze().

Part 2, the supervisors' live feed: `--supervisors` pages on /ws/supervisor at the app's own
1 Hz loop for `--seconds`; the server process's CPU (all its threads) against the same server
with no supervisor for the same time, the CPU per message, and how many messages each page got.

Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.cookiejar
import json
import math
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from argon2 import PasswordHasher

from dialer.calls.models import AttemptStatus
from dialer.config import Config
from dialer.demo import demo_config
from dialer.engine import CampaignEngine
from dialer.gates import UnguardedGate, build_guard
from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store import attempts as repo
from dialer.store import users
from dialer.store.db import Store, open_store
from dialer.store.models import Role
from pacing.service import make_pacer

if TYPE_CHECKING:  # the web stack and the clients load only when the bench runs
    import urllib.request

    import httpx
    from websockets.asyncio.client import ClientConnection

    from dialer.web.app import WebServices

HOST = "127.0.0.1"
# The goal the product was given for the screen pop, in ms (reported against, never enforced).
POP_GOAL_MS = 100.0
# How long the browsers' process may take over one request (signing in 500 pages included).
ASK_TIMEOUT_S = 180.0
# How long a wave's messages may take to arrive before they are counted as missing.
WAVE_TIMEOUT_S = 30.0
# Pages signing in and connecting at once.
CONNECT_CONCURRENCY = 32
# The browsers' replies can be long (every receipt of the run on one line).
PIPE_LIMIT = 2**26
FREEZE_POINTS = ("run", "pages", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=500, help="agents' pages, one pop each way")
    parser.add_argument("--supervisors", type=int, default=50, help="supervisors' pages")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of each supervisor CPU window"
    )
    parser.add_argument("--wave", type=int, default=50, help="calls connected at once")
    parser.add_argument(
        "--gap-ms", type=float, default=200.0, help="from the debtor's answer to the connection"
    )
    parser.add_argument("--debtors", type=int, default=1000, help="debtors in the sample store")
    parser.add_argument(
        "--freeze",
        choices=FREEZE_POINTS,
        default="run",
        help="when the server calls gc.freeze(): as `dialer run` does (default), once the "
        "pages are served, or never",
    )
    parser.add_argument("--json", action="store_true")


@dataclass(frozen=True)
class Settings:
    agents: int = 500
    supervisors: int = 50
    seconds: float = 20.0
    wave: int = 50
    gap_s: float = 0.2
    debtors: int = 1000
    # When the server's objects are moved out of the garbage collector's reach (gc.freeze):
    # "run" as `dialer run` does (after the engine is built, before the pages' stack loads),
    # "pages" once the pages are served, "none" never.
    freeze: Literal["run", "pages", "none"] = "run"

    def __post_init__(self) -> None:
        if self.freeze not in FREEZE_POINTS:
            raise ValueError(f"freeze: one of {', '.join(FREEZE_POINTS)}, got {self.freeze!r}")
        if self.agents < 1 or self.supervisors < 0 or self.wave < 1 or self.debtors < 1:
            raise ValueError("agents, wave and debtors must be at least 1, supervisors 0 or more")
        if self.seconds <= 0 or self.gap_s < 0:
            raise ValueError("seconds must be positive and the gap not negative")


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings(
            agents=args.agents,
            supervisors=args.supervisors,
            seconds=args.seconds,
            wave=args.wave,
            gap_s=args.gap_ms / 1000.0,
            debtors=args.debtors,
            freeze=args.freeze,
        )
    except ValueError as exc:
        raise SystemExit(f"dialer bench web: {exc}") from None
    report = measure(settings)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        _print_report(settings, report)
    return 0


def measure(settings: Settings) -> dict[str, Any]:
    """Both parts, on a throwaway store; the figures as a flat dict (milliseconds, cores)."""
    with tempfile.TemporaryDirectory(prefix="dialer-bench-web-") as tmp, _quick_passwords():
        config = demo_config(ami_port=1, agents=settings.agents, data_dir=Path(tmp), time_scale=1)
        store = open_store(config.effective_database_url)
        try:
            setup = _prepare(store, config, settings)
            return asyncio.run(_measure(store, config, setup, settings))
        finally:
            gc.unfreeze()
            store.close()


# ----- the store and the people -----


@contextlib.contextmanager
def _quick_passwords() -> Iterator[None]:
    """argon2id at its lowest cost for the bench's own users while it runs.

    At the product's cost (~0.15 s per hash here) creating and signing in 550 users would take
    most of three minutes, and signing in is not what is measured. dialer.store.users has no
    seam for its hasher, so the module's is swapped and put back.
    """
    saved = users._hasher
    users._hasher = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    try:
        yield
    finally:
        users._hasher = saved


@dataclass(frozen=True)
class Call:
    agent_id: str
    attempt_id: int


@dataclass(frozen=True)
class Setup:
    tenant_id: int
    campaign_id: int
    password: str
    agent_users: tuple[str, ...]  # username == agent id
    supervisor_users: tuple[str, ...]
    # Each agent's two calls: the case read at the answer, then the cold one.
    prefetched: tuple[Call, ...]
    cold: tuple[Call, ...]


def _prepare(store: Store, config: Config, settings: Settings) -> Setup:
    tenant = config.campaign.tenant
    portfolio = config.data_dir / "portfolio.csv"
    write_sample_portfolio(portfolio, debtors=settings.debtors, seed=5)
    import_csv(store, portfolio, tenant=tenant)
    tenant_id = repo.ensure_tenant(store, tenant)
    campaign_id = repo.ensure_campaign(store, tenant_id, "bench-web", "progressive")
    password = secrets.token_urlsafe(16)
    agent_ids = tuple(a.id for a in config.agents)
    for n, agent_id in enumerate(agent_ids, start=1):
        users.add_user(
            store,
            tenant,
            agent_id,
            password,
            Role.AGENT,
            display_name=f"Agent {n}",
            agent_id=agent_id,
        )
    supervisors = tuple(f"supervisor{n}" for n in range(1, settings.supervisors + 1))
    for username in supervisors:
        users.add_user(store, tenant, username, password, Role.SUPERVISOR)
    calls = _attempts(store, config, tenant_id, campaign_id, agent_ids)
    return Setup(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        password=password,
        agent_users=agent_ids,
        supervisor_users=supervisors,
        prefetched=calls[: len(agent_ids)],
        cold=calls[len(agent_ids) :],
    )


def _attempts(
    store: Store, config: Config, tenant_id: int, campaign_id: int, agent_ids: Sequence[str]
) -> tuple[Call, ...]:
    """Two answered attempts per agent, written as the engine writes them (one commit for the
    new rows, one for the changes), the agent already chosen (as the router stores it)."""
    wanted = 2 * len(agent_ids)
    candidates = repo.next_candidates(store, campaign_id, wanted)
    if not candidates:
        raise SystemExit("no dialable phone in the benchmark portfolio (raise --debtors)")
    now = datetime.now(UTC)
    new = [
        repo.NewAttempt(
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            debtor_id=c.debtor_id,
            debt_id=c.debt_id,
            phone_id=c.phone_id,
            node_id=config.node_id,
            server="sim",
            uniqueid=f"bench-web-{n}",
            dialed_at=now,
        )
        # Fewer dialable debtors than calls: some debtors are called twice (a history to show).
        for n, c in enumerate(candidates[i % len(candidates)] for i in range(wanted))
    ]
    ids = repo.create_attempts(store, new)
    agents = [agent_ids[i % len(agent_ids)] for i in range(wanted)]
    repo.update_attempts(
        store,
        [
            (
                attempt_id,
                repo.AttemptChange(
                    status=AttemptStatus.ANSWERED, answered_at=now, agent_id=agent_id
                ),
            )
            for attempt_id, agent_id in zip(ids, agents, strict=True)
        ],
    )
    return tuple(Call(a, i) for a, i in zip(agents, ids, strict=True))


# ----- the server's side -----


async def _measure(
    store: Store, config: Config, setup: Setup, settings: Settings
) -> dict[str, Any]:
    engine = CampaignEngine(
        config,
        store,
        tenant_id=setup.tenant_id,
        campaign_id=setup.campaign_id,
        pacer=make_pacer("progressive"),
        gate=UnguardedGate(),
        campaign_name="bench-web",
    )
    # The config's agents are dialled per call: ready as soon as the campaign starts.
    engine.agents.log_in_all(engine.clock())
    guard = build_guard(config, store)
    if settings.freeze == "run":
        _freeze()
    # Imported here, as `dialer run` imports the pages' stack: after its gc.freeze().
    from dialer.web.app import create_app
    from dialer.web.server import serving
    from dialer.web.wiring import web_services

    services = web_services(engine, config, guard, asyncio.Event())
    app = create_app(services)
    report: dict[str, Any] = {
        "agents": settings.agents,
        "supervisors": settings.supervisors,
        "gc_freeze": settings.freeze,
    }
    pauses = _FullCollections()
    with pauses.watching():
        async with serving(app, HOST, 0) as port, _browsers() as browsers:
            if settings.freeze == "pages":
                _freeze()
            url = f"http://{HOST}:{port}"
            tenant = config.campaign.tenant
            logins = [[u, setup.password] for u in setup.agent_users]
            started = time.perf_counter()
            reply = await browsers.ask("agents", url=url, tenant=tenant, logins=logins)
            report["agents_signed_in_s"] = time.perf_counter() - started
            report["agents_connected"] = reply["connected"]
            with pauses.counting("pops", report):
                report.update(await _screen_pops(services, browsers, setup, settings))
            # What one full collection costs with every agent's page open (the loop stops).
            started = time.perf_counter()
            gc.collect()
            report["server_full_gc_ms"] = (time.perf_counter() - started) * 1000.0
            await browsers.ask("close_agents")
            with pauses.counting("live", report):
                report.update(
                    await _supervisor_feed(services, browsers, setup, settings, url, tenant)
                )
    report["server_max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


class _FullCollections:
    """How long this process's full garbage collections (generation 2) stop everything."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000.0)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        gc.callbacks.append(self)
        try:
            yield
        finally:
            gc.callbacks.remove(self)

    @contextlib.contextmanager
    def counting(self, part: str, report: dict[str, Any]) -> Iterator[None]:
        """Into `report`: how many full collections ran during the block, the longest."""
        before = len(self.pauses_ms)
        yield
        during = self.pauses_ms[before:]
        report[f"{part}_server_full_gc_count"] = len(during)
        report[f"{part}_server_full_gc_max_ms"] = max(during, default=0.0)


def _freeze() -> None:
    """What is loaded by now lives as long as the process: out of the collector's scans."""
    gc.collect()
    gc.freeze()


async def _screen_pops(
    services: WebServices, browsers: Browsers, setup: Setup, settings: Settings
) -> dict[str, Any]:
    engine = services.engine
    pool = engine.agents
    pops = services.pops
    tenant_id = setup.tenant_id
    sent: dict[str, dict[tuple[str, int], float]] = {"bench": {}, "prefetch": {}, "cold": {}}
    server_ms: dict[str, list[float]] = {"prefetch": [], "cold": []}
    cpu0, wall0 = time.process_time(), time.perf_counter()

    async def arrived(kind: str, keys: Sequence[tuple[str, int]]) -> None:
        """Until the pages have every message of the wave (those later still count, late)."""
        await browsers.ask("wait", kind=kind, keys=[list(k) for k in keys], timeout=WAVE_TIMEOUT_S)

    async def take_calls(name: str, calls: Sequence[Call]) -> None:
        for call in calls:
            pool.reserve_longest_idle(call.attempt_id, engine.clock(), only=call.agent_id)
            if name == "prefetch":
                pops.call_answered(call.attempt_id)
        await asyncio.sleep(settings.gap_s)
        pops.latencies_ms.clear()
        # As the engine does on a Connected effect: the agent's state, then the pop.
        for call in calls:
            sent[name][(call.agent_id, call.attempt_id)] = time.time()
            pool.start_call(call.agent_id, engine.clock())
            pops.call_connected(call.agent_id, call.attempt_id)
        await arrived("pop", [(c.agent_id, c.attempt_id) for c in calls])
        server_ms[name] += pops.latencies_ms
        # As the engine does when the call ends, then the disposition ends wrap-up; the next
        # burst starts when these have reached the pages.
        for call in calls:
            pool.end_call(call.agent_id, engine.clock())
            pops.call_ended(call.agent_id, call.attempt_id)
            pool.finish_wrap_up(call.agent_id, engine.clock())
        await arrived("call_ended", [(c.agent_id, c.attempt_id) for c in calls])

    seq = 0
    size = settings.wave
    for start in range(0, len(setup.prefetched), size):
        keys = []
        for call in setup.prefetched[start : start + size]:
            seq += 1
            keys.append((call.agent_id, seq))
            sent["bench"][keys[-1]] = time.time()
            services.hub.to_agent(tenant_id, call.agent_id, {"type": "bench", "seq": seq})
        await arrived("bench", keys)
        await take_calls("prefetch", setup.prefetched[start : start + size])
        await take_calls("cold", setup.cold[start : start + size])
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0

    reply = await browsers.ask("receipts", kinds=["bench", "pop"])
    got: dict[tuple[str, str, int], tuple[float, int]] = {
        (username, kind, key): (at, length) for username, kind, key, at, length in reply["receipts"]
    }
    figures: dict[str, Any] = {}
    latencies: dict[str, list[float]] = {}
    for name, stamps in sent.items():
        kind = "bench" if name == "bench" else "pop"
        latencies[name] = [
            (got[(agent, kind, key)][0] - at) * 1000.0
            for (agent, key), at in stamps.items()
            if (agent, kind, key) in got
        ]
        label = "baseline" if name == "bench" else f"pop_{name}"
        figures.update(_percentiles(f"{label}_ms", latencies[name]))
        figures[f"{label}_received"] = len(latencies[name])
        figures[f"{label}_missing"] = len(stamps) - len(latencies[name])
    for name, values in server_ms.items():
        figures.update(_percentiles(f"pop_{name}_server_ms", values))
    for name in ("prefetch", "cold"):
        for stat in ("p50", "p99"):
            figures[f"pop_{name}_{stat}_vs_baseline"] = (
                figures[f"pop_{name}_ms_{stat}"] / figures[f"baseline_ms_{stat}"]
            )
        figures[f"pop_{name}_p99_under_{POP_GOAL_MS:g}_ms"] = (
            figures[f"pop_{name}_ms_p99"] < POP_GOAL_MS
        )
    sizes = [length for (_, kind, _), (_, length) in got.items() if kind == "pop"]
    figures["pop_size_bytes_mean"] = sum(sizes) / len(sizes) if sizes else math.nan
    # Everything the server did in part 1 (both pops, agents' states, call ends, baseline).
    figures["pops_server_cpu_ms_per_call"] = cpu * 1000.0 / max(1, 2 * len(setup.prefetched))
    figures["pops_part_s"] = wall
    return figures


async def _supervisor_feed(
    services: WebServices,
    browsers: Browsers,
    setup: Setup,
    settings: Settings,
    url: str,
    tenant: str,
) -> dict[str, Any]:
    hub = services.hub
    # The same server with nobody watching, for as long.
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(settings.seconds)
    idle_cpu, idle_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    figures: dict[str, Any] = {"server_idle_cores": idle_cpu / idle_wall}
    if not setup.supervisor_users:
        return figures
    logins = [[u, setup.password] for u in setup.supervisor_users]
    reply = await browsers.ask("supervisors", url=url, tenant=tenant, logins=logins)
    figures["supervisors_connected"] = reply["connected"]
    # Every page has had its first message: the loop is in its stride.
    await browsers.ask("wait_live", timeout=WAVE_TIMEOUT_S)
    cpu0, wall0, sent0, dropped0 = time.process_time(), time.perf_counter(), hub.sent, hub.dropped
    start = time.time()
    await asyncio.sleep(settings.seconds)
    end = time.time()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    messages = hub.sent - sent0
    reply = await browsers.ask("live_counts", start=start, end=end)
    counts: list[int] = reply["counts"]
    cores = cpu / wall
    extra_cpu = cpu - figures["server_idle_cores"] * wall
    figures.update(
        {
            "server_supervised_cores": cores,
            "server_supervised_vs_idle": cores / figures["server_idle_cores"]
            if figures["server_idle_cores"] > 0
            else math.inf,
            "supervision_extra_cores": extra_cpu / wall,
            "live_messages_sent": messages,
            "live_messages_dropped": hub.dropped - dropped0,
            "live_cpu_ms_per_message": extra_cpu * 1000.0 / messages if messages else math.nan,
            "live_messages_per_page_min": min(counts) if counts else 0,
            "live_messages_per_page_max": max(counts) if counts else 0,
            "live_window_s": end - start,
            "live_message_bytes_mean": reply["mean_bytes"],
            "live_interval_s_mean": reply["mean_interval_s"],
            "live_websocket_extensions": reply["extensions"],
        }
    )
    return figures


def _percentiles(name: str, values: Sequence[float]) -> dict[str, float]:
    """p50, p99 (nearest rank) and max of `values`; NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return {f"{name}_p50": math.nan, f"{name}_p99": math.nan, f"{name}_max": math.nan}

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {f"{name}_p50": rank(0.5), f"{name}_p99": rank(0.99), f"{name}_max": ordered[-1]}


class Browsers:
    """The browsers' process, asked one thing at a time (a JSON line each way)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None  # both piped
        stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        await stdin.drain()
        async with asyncio.timeout(ASK_TIMEOUT_S):
            line = await stdout.readline()
        if not line:
            raise RuntimeError(f"the browsers' process ended during {op!r}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"the browsers' process failed {op!r}: {reply['error']}")
        return reply


@contextlib.asynccontextmanager
async def _browsers() -> AsyncIterator[Browsers]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dialer.bench_web",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=PIPE_LIMIT,
    )
    browsers = Browsers(process)
    try:
        yield browsers
    finally:
        if process.returncode is None:
            with contextlib.suppress(RuntimeError, OSError, TimeoutError):
                await browsers.ask("quit")
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def _print_report(settings: Settings, r: dict[str, Any]) -> None:
    print(
        f"screen pops: {settings.agents} agents' pages, {settings.wave} calls connected at once, "
        f"{settings.gap_s * 1000:.0f} ms from answer to connection; "
        f"connection -> received by the page, ms"
    )
    print(f"  {'':<44} {'p50':>7} {'p99':>7} {'max':>7} {'p50/base':>9} {'p99/base':>9}")
    rows = (
        ("baseline: a tiny message through the hub", "baseline_ms", None),
        ("pop, case read at the answer (product path)", "pop_prefetch_ms", "prefetch"),
        ("pop, case read at the connection (cold)", "pop_cold_ms", "cold"),
        ("  of which in the server, read ahead", "pop_prefetch_server_ms", None),
        ("  of which in the server, cold", "pop_cold_server_ms", None),
    )
    for label, key, ratio in rows:
        vs = (
            f" {r[f'pop_{ratio}_p50_vs_baseline']:>8.2f}x {r[f'pop_{ratio}_p99_vs_baseline']:>8.2f}x"
            if ratio
            else ""
        )
        print(
            f"  {label:<44} {r[f'{key}_p50']:>7.1f} {r[f'{key}_p99']:>7.1f} "
            f"{r[f'{key}_max']:>7.1f}{vs}"
        )
    goal = f"{POP_GOAL_MS:g}"
    for name in ("prefetch", "cold"):
        under = "under" if r[f"pop_{name}_p99_under_{goal}_ms"] else "NOT under"
        print(f"  goal p99 < {goal} ms, {name}: {r[f'pop_{name}_ms_p99']:.1f} ms, {under}")
    print(
        f"  pops received: {r['pop_prefetch_received']} + {r['pop_cold_received']} "
        f"(missing {r['pop_prefetch_missing']} + {r['pop_cold_missing']}); "
        f"{r['pop_size_bytes_mean'] / 1000:.1f} kB each; "
        f"server CPU {r['pops_server_cpu_ms_per_call']:.2f} ms per call; "
        f"{r['agents_connected']} pages signed in and connected in {r['agents_signed_in_s']:.1f} s"
    )
    print(
        f"  server's full garbage collections meanwhile: {r['pops_server_full_gc_count']}, "
        f"longest {r['pops_server_full_gc_max_ms']:.0f} ms; one, asked for with every page "
        f"open: {r['server_full_gc_ms']:.0f} ms (gc.freeze: {r['gc_freeze']})"
    )
    print(
        f"supervisors' live feed: {settings.supervisors} pages at the app's 1 Hz for "
        f"{settings.seconds:g} s, {settings.agents} agents in each message"
    )
    print(f"  server CPU, nobody watching       {r['server_idle_cores']:.3f} cores")
    if "server_supervised_cores" in r:
        _print_supervised(settings, r)
    print(
        f"  server's full garbage collections meanwhile: {r['live_server_full_gc_count']}, "
        f"longest {r['live_server_full_gc_max_ms']:.0f} ms; "
        f"server max RSS {r['server_max_rss_mb']:.0f} MB"
    )


def _print_supervised(settings: Settings, r: dict[str, Any]) -> None:
    print(
        f"  server CPU, {settings.supervisors} supervisors watching {r['server_supervised_cores']:.3f} "
        f"cores (x{r['server_supervised_vs_idle']:.1f} of idle; "
        f"+{r['supervision_extra_cores']:.3f} cores)"
    )
    print(
        f"  per message: {r['live_cpu_ms_per_message']:.2f} ms of server CPU, "
        f"{r['live_message_bytes_mean'] / 1000:.1f} kB of JSON; "
        f"{r['live_messages_sent']} sent, {r['live_messages_dropped']} dropped"
    )
    print(
        f"  messages per page over {r['live_window_s']:.1f} s: "
        f"min {r['live_messages_per_page_min']}, max {r['live_messages_per_page_max']}, "
        f"one every {r['live_interval_s_mean']:.3f} s; "
        f"extensions: {r['live_websocket_extensions'] or 'none'}"
    )


# ----- the browsers' side (the child process) -----


class _NoCookieJar(http.cookiejar.DefaultCookiePolicy):
    """Keeps no cookie: each page reads its own from its login reply."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False


@dataclass
class _Pages:
    """Every page the bench holds open, and what each received when (wall clock)."""

    tasks: asyncio.TaskGroup
    agents: list[ClientConnection] = field(default_factory=list)
    supervisors: list[ClientConnection] = field(default_factory=list)
    # (username, type, key, when, characters) of every agent page's message
    receipts: list[tuple[str, str, int | None, float, int]] = field(default_factory=list)
    seen: set[tuple[str, str, int | None]] = field(default_factory=set)
    # per supervisor page: (when, characters) of every message
    live: list[list[tuple[float, int]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def sign_in(
        self, url: str, tenant: str, logins: Sequence[Sequence[str]], path: str
    ) -> list[tuple[str, ClientConnection]]:
        import httpx
        from websockets.asyncio.client import connect

        ws_url = url.replace("http://", "ws://", 1) + path
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(
            client: httpx.AsyncClient, username: str, password: str
        ) -> tuple[str, ClientConnection]:
            async with gate:
                reply = await client.post(
                    "/api/login",
                    json={"tenant": tenant, "username": username, "password": password},
                )
                reply.raise_for_status()
                token = reply.cookies["dialer_session"]
                socket = await connect(
                    ws_url,
                    additional_headers={"Cookie": f"dialer_session={token}"},
                    max_size=2**24,
                    ping_interval=None,
                    open_timeout=60,
                )
                return username, socket

        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            # One client for all the pages, but no shared cookie jar: a login that carries
            # another page's session cookie ends that session (one browser, a new user).
            client.cookies.jar.set_policy(_NoCookieJar())
            return list(await asyncio.gather(*(one(client, u, p) for u, p in logins)))

    async def open_agents(self, url: str, tenant: str, logins: Sequence[Sequence[str]]) -> int:
        for username, socket in await self.sign_in(url, tenant, logins, "/ws/agent"):
            self.agents.append(socket)
            self.tasks.create_task(self._read_agent(username, socket))
        return len(self.agents)

    async def _read_agent(self, username: str, socket: ClientConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for text in socket:
                at = time.time()
                message = json.loads(text)
                kind = str(message.get("type"))
                key: int | None = None
                if kind == "pop":
                    key = int(message["case"]["attempt_id"])
                elif kind == "bench":
                    key = int(message["seq"])
                elif kind == "call_ended":
                    key = int(message["attempt_id"])
                self.receipts.append((username, kind, key, at, len(text)))
                self.seen.add((username, kind, key))
                self.changed.set()

    async def open_supervisors(self, url: str, tenant: str, logins: Sequence[Sequence[str]]) -> int:
        for _, socket in await self.sign_in(url, tenant, logins, "/ws/supervisor"):
            received: list[tuple[float, int]] = []
            self.supervisors.append(socket)
            self.live.append(received)
            self.tasks.create_task(self._read_supervisor(socket, received))
        return len(self.supervisors)

    async def _read_supervisor(
        self, socket: ClientConnection, received: list[tuple[float, int]]
    ) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for text in socket:
                received.append((time.time(), len(text)))
                self.changed.set()

    async def wait_for(self, done: Callable[[], bool], timeout: float) -> None:
        """Until `done()` is true or `timeout` seconds have passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not done():
                    self.changed.clear()
                    await self.changed.wait()

    async def close(self, sockets: list[ClientConnection]) -> None:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
        sockets.clear()


async def _answer(pages: _Pages, request: dict[str, Any]) -> dict[str, Any] | None:
    """One request of the server's side; None to stop."""
    op = request["op"]
    if op == "agents":
        connected = await pages.open_agents(request["url"], request["tenant"], request["logins"])
        return {"connected": connected}
    if op == "wait":
        kind = request["kind"]
        wanted = {(username, kind, key) for username, key in request["keys"]}
        await pages.wait_for(lambda: wanted <= pages.seen, request["timeout"])
        return {"missing": len(wanted - pages.seen)}
    if op == "receipts":
        kinds = set(request["kinds"])
        return {"receipts": [r for r in pages.receipts if r[1] in kinds]}
    if op == "close_agents":
        await pages.close(pages.agents)
        return {}
    if op == "supervisors":
        connected = await pages.open_supervisors(
            request["url"], request["tenant"], request["logins"]
        )
        return {"connected": connected}
    if op == "wait_live":
        await pages.wait_for(lambda: all(pages.live), request["timeout"])
        return {}
    if op == "live_counts":
        start, end = request["start"], request["end"]
        inside = [[(at, n) for at, n in r if start <= at < end] for r in pages.live]
        sizes = [n for r in inside for _, n in r]
        gaps = [(r[-1][0] - r[0][0]) / (len(r) - 1) for r in inside if len(r) > 1]
        first = pages.supervisors[0].response if pages.supervisors else None
        return {
            "counts": [len(r) for r in inside],
            "mean_bytes": sum(sizes) / len(sizes) if sizes else 0.0,
            "mean_interval_s": sum(gaps) / len(gaps) if gaps else 0.0,
            # What the server agreed to (permessage-deflate, as with browsers), if anything.
            "extensions": first.headers.get("Sec-WebSocket-Extensions", "") if first else "",
        }
    if op == "quit":
        await pages.close(pages.agents)
        await pages.close(pages.supervisors)
        return None
    raise ValueError(f"unknown request {op!r}")


async def _browsers_main() -> None:
    loop = asyncio.get_running_loop()
    requests = asyncio.StreamReader(limit=PIPE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(requests), sys.stdin)

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async with asyncio.TaskGroup() as tasks:
        pages = _Pages(tasks)
        while line := await requests.readline():
            try:
                answer = await _answer(pages, json.loads(line))
            except Exception as exc:  # told to the server's side, which stops the bench
                reply({"error": f"{type(exc).__name__}: {exc}"})
                continue
            if answer is None:
                reply({})
                break
            reply(answer)
        await pages.close(pages.agents)
        await pages.close(pages.supervisors)


if __name__ == "__main__":
    asyncio.run(_browsers_main())
