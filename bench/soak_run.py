"""One soak run: its processes (the development backend, two gateways, a Celery worker and
beat), its clients and its chaos — limit changes, a revocation, the backend killed and
started again on the same port. Everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import openai

from bench import servers
from bench import soak_world as world
from bench.soak_clients import TIMEOUT, Client, Record
from devbackend.testing import start_devbackend, stop_devbackend

GATEWAYS = 2
SECOND_READING = 1.0  # seconds after a limit change that its budget's used + held is read again


class Run:
    def __init__(self, args, settings: servers.Settings, logs: Path) -> None:
        self.args, self.settings, self.logs = args, settings, logs
        self.rng = random.Random(args.seed)
        self.backend = None
        self.backend_port = 0
        self.gateways: list[servers.Anvil] = []
        self.celery: list = []
        self.keys: list[world.Key] = []
        self.records: list[Record] = []
        self.changes: list[world.LimitChange] = []
        self.events: dict = {}
        self.load_seconds = 0.0

    @property
    def ports(self) -> list[int]:
        return [gateway.port for gateway in self.gateways]

    def start(self) -> None:
        self.backend = start_devbackend(log=self.logs / "devbackend.log")
        self.backend_port = int(self.backend.url.rsplit(":", 1)[1])
        self.keys = world.setup(backend_url=f"{self.backend.url}/v1", keys=self.args.keys)
        servers.say("starting two gateways, a Celery worker and beat …")
        for number in range(1, GATEWAYS + 1):
            self.gateways.append(
                servers.anvil_start(
                    self.settings, loop="uvloop", http="httptools",
                    log=self.logs / f"gateway-{number}.log", access_log=False,
                )
            )  # fmt: skip
        celery = ("-m", "celery", "-A", "portal")
        self.celery = [
            servers.python_start(
                self.settings, *celery, "worker", "--loglevel", "info", "--concurrency", "2",
                "--hostname", "soak@127.0.0.1", log=self.logs / "celery-worker.log",
            ),
            servers.python_start(
                self.settings, *celery, "beat", "--loglevel", "info",
                "--schedule", str(self.logs / "celerybeat-schedule"),
                log=self.logs / "celery-beat.log",
            ),
        ]  # fmt: skip

    # -- the load

    async def load(self, *, until: float, bound: float) -> None:
        """The clients until ``until`` (each finishes the request it is in), the chaos
        alongside; all of it within ``bound`` seconds after ``until``."""
        began = time.monotonic()
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=200)
        streams = [
            httpx.AsyncClient(trust_env=False, timeout=TIMEOUT, limits=limits)
            for _ in self.gateways
        ]
        calls = [openai.DefaultAsyncHttpxClient(trust_env=False) for _ in self.gateways]
        clients = []
        for i in range(self.args.clients):
            key, gateway = self.keys[i % len(self.keys)], i % len(self.gateways)
            base = f"http://127.0.0.1:{self.ports[gateway]}/api/v1"
            clients.append(Client(i, key.index, key.secret, base, streams[gateway], calls[gateway]))
        try:
            work = [client.run(until=until) for client in clients]
            async with asyncio.timeout(until - time.monotonic() + bound):
                await asyncio.gather(self.chaos(began, until), *work)
        finally:
            self.load_seconds = time.monotonic() - began
            self.records = [record for client in clients for record in client.records]
            for client in [*streams, *calls]:
                await client.aclose()

    async def chaos(self, began: float, until: float) -> None:
        """Limit changes spread over 10-90 % of the run, the revocation at 40 %, the backend's
        restart at 55 %: each at its time, one after another."""
        span = until - began
        plan = [(0.1 + 0.8 * n / max(1, self.args.changes - 1), "limit", n)
                for n in range(self.args.changes)]  # fmt: skip
        plan += [(0.4, "revoke", 0), (0.55, "restart", 0)]
        budgets = world.targets(self.keys)
        by_kind = {kind: [b for b in budgets if b.kind == kind] for kind in world.KINDS}
        for share, action, n in sorted(plan):
            await asyncio.sleep(max(0.0, began + share * span - time.monotonic()))
            at = time.monotonic() - began
            try:
                await self._act(action, n, at, by_kind)
            except Exception as exc:  # reported as a failure; the run goes on
                self.events.setdefault("errors", []).append(f"{action} at {at:.0f} s: {exc!r}")

    async def _act(self, action: str, n: int, at: float, by_kind: dict) -> None:
        if action == "limit":
            budget = self.rng.choice(by_kind[world.KINDS[n % len(world.KINDS)]])
            await self._change(budget, at)
        elif action == "revoke":
            key = self.keys[0]
            await asyncio.to_thread(world.revoke, key.id)
            self.events.update(revoked=key.index, revoked_at=at)
        else:
            await asyncio.to_thread(self._restart_backend)
            self.events.update(restarted=True, restarted_at=at)

    async def _change(self, budget: world.Budget, at: float) -> None:
        rng = random.Random(self.rng.random())
        change = await asyncio.to_thread(world.limit_change, budget, rng=rng, at=at)
        self.changes.append(change)
        await asyncio.sleep(SECOND_READING)
        _, used, held = await asyncio.to_thread(world.state, budget)
        change.held_in.append(used + held)

    def _restart_backend(self) -> None:
        """Kill the development backend (no goodbye to the streams in flight) and start it
        again on the same port."""
        killed = time.monotonic()
        self.backend.process.kill()
        self.backend.process.wait()
        self.backend = start_devbackend(self.backend_port, log=self.logs / "devbackend.log")
        self.events["down"] = time.monotonic() - killed

    # -- the end

    def stop_gateways(self) -> None:
        """Graceful: each waits for its requests' settlements and withdraws its ready holds."""
        for gateway in self.gateways:
            servers.process_stop(gateway.process, timeout=30)

    def stop(self) -> None:
        self.stop_gateways()
        for process in self.celery:
            servers.process_stop(process, timeout=15)
        if self.backend is not None:
            stop_devbackend(self.backend.process)

    def change_kinds(self) -> Counter:
        return Counter(change.budget.kind for change in self.changes)

    def sweeps(self) -> Counter:
        """How the beat's hold sweeper ended each time the worker ran it ("succeeded" or
        "raised")."""
        log = self.logs / "celery-worker.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return Counter(
            ending
            for line in text.splitlines()
            if "sweep_expired_holds" in line
            for ending in ("succeeded", "raised")
            if f"] {ending}" in line
        )
