"""The measurements: non-streaming load direct vs through Anvil at each concurrency, then
streams one at a time, with the servers' CPU time and Redis connections around every run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from bench import servers, streams
from bench.client import Target, connect, load_run, stream_once
from bench.report import Scenario, Side
from bench.world import CHAT_MODEL, STREAM_MODEL, STREAM_UPSTREAM

PROMPT = [{"role": "user", "content": "Benchmark: say something short."}]


def chat_body(model: str, *, max_tokens: int = 16) -> bytes:
    return json.dumps({"model": model, "messages": PROMPT, "max_tokens": max_tokens}).encode()


def stream_body(model: str, *, tokens: int) -> bytes:
    body = {
        "model": model,
        "messages": PROMPT,
        "max_tokens": tokens,
        "ignore_eos": True,  # exactly `tokens` tokens (vLLM's option; the devbackend has it)
        "stream": True,
        "stream_options": {"include_usage": True},  # so both sides send the same events
    }
    return json.dumps(body).encode()


@dataclass
class Measured:
    scenarios: list[Scenario]
    streaming: streams.Comparison | None  # None: not measured (the --workers N run)
    stream_cpu_ms: float  # Anvil's CPU per relayed stream
    anvil_ok: int  # successful requests through Anvil, warm-ups included
    anvil_failed: dict[str, int]  # Anvil's other answers (status or error), warm-ups included
    profiled: dict[str, int]  # profile name → requests through Anvil while it was recorded


def _cpu_seconds(pid: int | list[int]) -> float:
    """A process's CPU time, or the sum of several's (Anvil's with ``--workers N``)."""
    if isinstance(pid, int):
        return servers.cpu_seconds(pid)
    return sum(servers.cpu_seconds(one) for one in pid)


class Bench:
    def __init__(
        self, args, *, direct: Target, anvil: Target, pids: dict[str, int | list[int]], redis_url
    ):
        self.args = args
        self.direct, self.anvil = direct, anvil
        self.pids = pids  # "anvil" (with --workers N, its processes), "backend"
        self.redis = redis.Redis.from_url(redis_url)  # one connection, kept
        self.profiler = None
        self.profiled: dict[str, int] = {}
        self.anvil_ok = 0
        self.anvil_failed: dict[str, int] = {}

    def meters(self) -> dict[str, float]:
        now = {name: _cpu_seconds(pid) for name, pid in self.pids.items()}
        now["client"] = time.process_time()
        now["postgres"] = servers.service_cpu_seconds("postgres")
        now["redis"] = servers.service_cpu_seconds("redis-server")
        now["redis_connections"] = servers.redis_connections(self.redis)
        return now

    async def load(
        self, target: Target, *, concurrency: int, count: int, side: Side | None, seconds=None
    ):
        before = self.meters()
        result = await load_run(
            target=target,
            body=chat_body(CHAT_MODEL),
            concurrency=concurrency,
            count=count,
            seconds=seconds,
        )
        after = self.meters()
        if target is self.anvil:
            self.anvil_ok += result.ok
            for error, n in result.errors.items():
                self.anvil_failed[error] = self.anvil_failed.get(error, 0) + n
        if side is not None:
            side.latencies += result.latencies
            side.elapsed += result.elapsed
            for name, value in after.items():
                side.meters[name] = side.meters.get(name, 0.0) + value - before[name]
            for error, n in result.errors.items():
                side.errors[error] = side.errors.get(error, 0) + n

    async def scenario(self, concurrency: int) -> Scenario:
        scenario = Scenario(concurrency)
        warmup = max(self.args.warmup // 4, 4 * concurrency)
        for target in (self.direct, self.anvil):
            await self.load(target, concurrency=concurrency, count=warmup, side=None)
        count = self.args.requests // self.args.rounds
        seconds = self.args.seconds / self.args.rounds
        for _ in range(self.args.rounds):  # alternate, so background load hits both alike
            for target, side in ((self.direct, scenario.direct), (self.anvil, scenario.anvil)):
                await self.load(
                    target, concurrency=concurrency, count=count, side=side, seconds=seconds
                )
        return scenario

    async def streaming(self) -> tuple[streams.Comparison, float]:
        tokens, count = self.args.stream_tokens, self.args.streams
        bodies = {
            self.direct: stream_body(STREAM_UPSTREAM, tokens=tokens),
            self.anvil: stream_body(STREAM_MODEL, tokens=tokens),
        }
        connections = {target: await connect(target.port) for target in bodies}
        runs: dict[Target, list[streams.Parsed]] = {target: [] for target in bodies}
        anvil_cpu = 0.0
        for i in range(count + 2):  # the first two of each side are a warm-up
            for target, body in bodies.items():  # alternating, one at a time
                before = servers.cpu_seconds(self.pids["anvil"])
                record = await stream_once(connections[target], target=target, body=body)
                spent = servers.cpu_seconds(self.pids["anvil"]) - before
                if record.status != 200:
                    raise RuntimeError(f"{target.name} stream answered {record.status}")
                if target is self.anvil:
                    self.anvil_ok += 1
                    anvil_cpu += spent if i >= 2 else 0.0
                if i >= 2:
                    runs[target].append(streams.parse(record))
        for connection in connections.values():
            connection.close()
        comparison = streams.compare(runs[self.direct], runs[self.anvil], tokens=tokens)
        return comparison, 1000 * anvil_cpu / count

    def profile_start(self, name: str) -> None:
        """With --profile DIR: py-spy Anvil into DIR/<name>.txt until profile_stop."""
        if self.args.profile:
            self.args.profile.mkdir(parents=True, exist_ok=True)
            output = self.args.profile / f"{name}.txt"
            self.profiler = servers.profiler_start(self.pids["anvil"], output)
            self.profiled[name] = -self.anvil_ok

    def profile_stop(self, name: str) -> None:
        if self.profiler is not None:
            servers.process_stop(self.profiler)
            self.profiler = None
            self.profiled[name] += self.anvil_ok

    async def run(self, *, streaming: bool = True) -> Measured:
        """Every measurement; without ``streaming`` the non-streaming ones only (the streaming
        figures are then None and 0)."""
        for target in (self.direct, self.anvil):
            await self.load(target, concurrency=16, count=self.args.warmup, side=None)
        scenarios = []
        self.profile_start("requests")
        for concurrency in self.args.concurrency:
            servers.say(f"non-streaming, concurrency {concurrency} …")
            scenarios.append(await self.scenario(concurrency))
        self.profile_stop("requests")
        comparison, stream_cpu = None, 0.0
        if streaming:
            servers.say("streaming …")
            self.profile_start("streams")
            comparison, stream_cpu = await self.streaming()
            self.profile_stop("streams")
        self.redis.close()
        return Measured(
            scenarios, comparison, stream_cpu, self.anvil_ok, self.anvil_failed, self.profiled
        )
