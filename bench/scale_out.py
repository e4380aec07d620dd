"""``--workers N``'s checks across processes (issue 19, "Several processes, one truth"): what
one Anvil process keeps, N keep together, against one PostgreSQL and one Redis. Run once on
``uvicorn --workers N`` (one port; the kernel hands each connection to a worker) and once on N
independent servers on N ports (connections opened round-robin over them). Every request is
sent on a connection of its own whose serving process is read from ``/proc``, so each figure
says which process answered what.

- **budgets**: for each of the four budgets, ``tests/budget_races.py``'s race (the one the
  suite's scale-out test runs): one request per process, then 200 at once; nothing spent past
  the budget, each answer 200 with its ledger row or 429 naming the budget, every process
  admitted some and refused some; then the counters against the ledger.
- **concurrency**: 40 requests at once on a model of ``max_concurrency`` 2 whose backend takes
  100 ms each: the development backend's own count of requests in flight never passed 2.
- **fair queue**: a model of one slot; grant A sends 24 requests at once, and once at least 12
  of them wait in the queue (some are served while the others arrive), grant B sends 6. The
  queue takes turns between grants (one waiter of each grant with waiters in turn,
  ``lib/slots_redis.py``), so from the moment B's first request is in the queue's rotation
  (read from Redis), B's k-th answer comes at the latest (2k+1)-th (A's request in flight,
  then A and B alternating), where first come, first served would put B's after A's.
- **revoke**: a key used once on every process (so every process has read it), revoked
  through ``api_key_revoke``; the next request on each process (on a new connection: the
  revocation, a Django process of its own, takes longer than uvicorn keeps an idle one) is
  refused with 401.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from bench import client, servers
from bench.client import Target
from bench.report import Check
from bench.world import CHAT_MODEL, FAIR_MODEL, LIMITED_CONCURRENCY, LIMITED_MODEL, RACE_MODEL
from devbackend.testing import devbackend_stats, devbackend_stats_reset

PATH = "/api/v1/chat/completions"
LIMITED_REQUESTS = 40
FLOOD, TURNS = 24, 6


@dataclass(frozen=True)
class Processes:
    name: str  # e.g. "uvicorn --workers 2"
    ports: list[int]
    pids: list[int]  # the processes that accept connections and answer


class _Connection(client._Connection):
    """The load client's connection, keeping the answer's headers too (the credits charged)."""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    async def send(self, raw: bytes, **kwargs) -> client.Response:
        self.headers: dict[str, str] = {}
        return await super().send(raw, **kwargs)


@dataclass
class _Open:
    connection: _Connection
    port: int
    pid: int = 0  # the process that accepted it


async def _connections(processes: Processes, count: int) -> list[_Open]:
    """``count`` connections, as many to each process (under ``--workers N`` the kernel picks
    the worker: more are opened, and the surplus closed, until each has its share), taken in
    turn from each process, with the process that accepted each."""
    loop = asyncio.get_running_loop()
    share = -(-count // len(processes.pids))
    kept: dict[int, list[_Open]] = {pid: [] for pid in processes.pids}
    for _ in range(20):
        short = sum(share - len(each) for each in kept.values())
        if not short:
            break
        batch = []
        for index in range(short):
            port = processes.ports[index % len(processes.ports)]
            _, connection = await loop.create_connection(_Connection, "127.0.0.1", port)
            batch.append(_Open(connection, port))
        await _owners(processes, batch)
        for o in batch:
            if len(kept[o.pid]) < share:
                kept[o.pid].append(o)
            else:
                o.connection.close()
    opened = [o for pid in processes.pids for o in kept[pid]]
    if any(len(each) < share for each in kept.values()):
        _close(opened)
        shares = {pid: len(each) for pid, each in kept.items()}
        raise RuntimeError(f"{processes.name}: connections per process {shares}, not {share}")
    chosen = [kept[pid][index] for index in range(share) for pid in processes.pids][:count]
    _close([o for o in opened if o not in chosen])
    return chosen


async def _owners(processes: Processes, opened: list[_Open]) -> None:
    """Which process accepted each connection (at most 5 s for every one to be accepted)."""
    for _ in range(100):
        owners = servers.connection_owners(processes.ports, processes.pids)
        for o in opened:
            o.pid = owners.get((o.port, o.connection.transport.get_extra_info("sockname")[1]), 0)
        if all(o.pid for o in opened):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{processes.name}: connections not accepted within 5 s")


def _close(opened: list[_Open]) -> None:
    for o in opened:
        o.connection.close()


async def _send(o: _Open, secret: str, model: str) -> tuple[int, dict, float]:
    """One chat request: status, the answer (its JSON body, and its credit header) and when
    it arrived."""
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20}
    ).encode()
    response = await o.connection.send(Target("", o.port, PATH, secret).request(body))
    answer = json.loads(response.body or b"{}")
    answer["charged"] = o.connection.headers.get("x-anvil-credits-charged")
    return response.status, answer, o.connection.now


def _per_process(processes: Processes, pids: list[int]) -> str:
    return "/".join(str(pids.count(pid)) for pid in processes.pids)


async def budgets(processes: Processes, races: dict) -> dict[str, list[dict]]:
    """Each race: one request on every process first (so each has read the key and the race
    starts even), then 200 at once, each on its own connection."""
    answers = {}
    for which, secret in races["secrets"].items():
        opened = await _connections(processes, races["requests"] + len(processes.pids))
        first, rest = opened[: len(processes.pids)], opened[len(processes.pids) :]
        try:
            sent = [await _send(o, secret, RACE_MODEL) for o in first]
            sent += await asyncio.gather(*(_send(o, secret, RACE_MODEL) for o in rest))
        finally:
            _close(opened)
        answers[which] = [
            {
                "server": o.pid,
                "status": status,
                "charged": answer["charged"],
                "code": answer.get("error", {}).get("code"),
                "message": answer.get("error", {}).get("message", ""),
            }
            for o, (status, answer, _) in zip(first + rest, sent, strict=True)
        ]
    return answers


def budget_checks(processes: Processes, answers: dict, verdict: dict) -> list[Check]:
    checks = []
    for which, seen in answers.items():
        problems = verdict["races"][which]["problems"]
        admitted = [a["server"] for a in seen if a["status"] == 200]
        refused = [a["server"] for a in seen if a["status"] == 429]
        checks.append(
            Check(
                not problems,
                f"{processes.name}: {which} budget {verdict['budget']}: "
                f"{verdict['races'][which]['spent']} spent by {len(admitted)} of {len(seen)} "
                f"requests (per process: admitted {_per_process(processes, admitted)}, refused "
                f"{_per_process(processes, refused)})" + "".join(f"; {p}" for p in problems),
            )
        )
    mismatches = verdict["mismatches"]
    checks.append(
        Check(
            not mismatches,
            f"{processes.name}: counters equal the ledger after the races "
            f"({len(mismatches)} differences)" + "".join(f"; {m}" for m in mismatches[:5]),
        )
    )
    return checks


async def concurrency(processes: Processes, secret: str, backend_url: str) -> tuple[Check, int]:
    devbackend_stats_reset(backend_url)
    opened = await _connections(processes, LIMITED_REQUESTS)
    started = client.clock()
    try:
        sent = await asyncio.gather(*(_send(o, secret, LIMITED_MODEL) for o in opened))
    finally:
        _close(opened)
    took = client.clock() - started
    stats = devbackend_stats(backend_url)
    ok = [o.pid for o, (status, _, _) in zip(opened, sent, strict=True) if status == 200]
    passed = stats["max_in_flight"] <= LIMITED_CONCURRENCY and len(ok) == len(opened)
    return Check(
        passed,
        f"{processes.name}: per-model concurrency: {len(opened)} requests at once on a model of "
        f"max_concurrency {LIMITED_CONCURRENCY} (100 ms each); the backend saw at most "
        f"{stats['max_in_flight']} in flight (limit {LIMITED_CONCURRENCY}); 200 per process "
        f"{_per_process(processes, ok)} of {len(opened)}, in {took:.1f} s",
    ), len(ok)


async def fair(processes: Processes, secrets: list[str], redis_url: str) -> tuple[Check, int]:
    slots = f"{os.environ.get('CACHE_KEY_PREFIX') or 'anvil'}:slots:{{{FAIR_MODEL}}}"
    store = aioredis.Redis.from_url(redis_url)
    floods = await _connections(processes, FLOOD)
    turns = await _connections(processes, TURNS)
    try:
        flood = [asyncio.ensure_future(_send(o, secrets[0], FAIR_MODEL)) for o in floods]
        for _ in range(1000):  # at most 10 s for A's requests to reach the queue
            queued = await store.zcard(f"{slots}:waiting")
            if queued >= FLOOD // 2:
                break
            await asyncio.sleep(0.01)
        b = [asyncio.ensure_future(_send(o, secrets[1], FAIR_MODEL)) for o in turns]
        for _ in range(10000):  # B in the queue's rotation beside A: B's turns count from here
            if await store.llen(f"{slots}:rotation") >= 2:
                break
        in_queue = client.clock()
        a, b = await asyncio.gather(*flood), await asyncio.gather(*b)
    finally:
        _close(floods + turns)
        await store.aclose()
    after = sorted(
        [(now, "A") for _, _, now in a if now >= in_queue] + [(now, "B") for _, _, now in b]
    )
    order = "".join(grant for _, grant in after)
    positions = [index + 1 for index, grant in enumerate(order) if grant == "B"]
    in_turn = all(p <= 2 * k + 1 for k, p in enumerate(positions, 1))
    ok = sum(status == 200 for status, _, _ in a + b)
    b_pids = _per_process(processes, [o.pid for o in turns])
    return Check(
        in_turn and ok == FLOOD + TURNS and queued >= FLOOD // 2,
        f"{processes.name}: fair queue: one slot; grant A sent {FLOOD} (per process "
        f"{_per_process(processes, [o.pid for o in floods])}), B sent {TURNS} ({b_pids}) "
        f"once {queued} of A's waited; answers from B's first in the queue on: {order}; "
        f"B's at {positions} (in turn: B's k-th by 2k+1); 200: {ok} of {FLOOD + TURNS}",
    ), ok


async def _each_process(processes: Processes, secret: str) -> list[int]:
    """One request on every process (in the order of ``processes.pids``): their statuses."""
    opened = await _connections(processes, len(processes.pids))
    try:
        return [
            (await _send(next(o for o in opened if o.pid == pid), secret, CHAT_MODEL))[0]
            for pid in processes.pids
        ]
    finally:
        _close(opened)


async def revoke(processes: Processes, secret: str, revoke_key) -> tuple[Check, int]:
    before = await _each_process(processes, secret)
    await asyncio.to_thread(revoke_key)
    after = await _each_process(processes, secret)
    return Check(
        set(before) == {200} and set(after) == {401},
        f"{processes.name}: revoke: a key answered on every process ({before}), revoked through "
        f"api_key_revoke; the next request on each process: {after} (401 expected)",
    ), before.count(200)


def data_create(settings, tag: str) -> dict:
    """One topology's grants and keys (``bench/world.py``), made before its processes start:
    each reads which grant may use which model when it starts, and a new grant's list reaches
    a running process only within GATEWAY_CATALOG_SECONDS."""
    return servers.world_call(settings, "scale-out", "--tag", tag)


async def run(
    processes: Processes, settings, data: dict, *, tag: str, backend_url: str
) -> tuple[list[Check], int]:
    """Every check on ``processes`` (running), with the topology's ``data``; the checks and
    how many requests they had answered 200 (each an ok ledger row)."""
    servers.say(f"{processes.name}: budgets, concurrency, fair queue, revoke …")
    answers = await budgets(processes, data["races"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "answers.json"
        path.write_text(json.dumps(answers))
        verdict = servers.world_call(settings, "races-check", "--tag", tag, "--answers", str(path))
    checks = budget_checks(processes, answers, verdict)
    ok = sum(a["status"] == 200 for seen in answers.values() for a in seen)

    def revoke_key() -> None:
        servers.world_call(settings, "revoke", "--id", str(data["revoke"]["id"]))

    for check, answered in [
        await concurrency(processes, data["limited"], backend_url),
        await fair(processes, data["fair"], settings.redis_url),
        await revoke(processes, data["revoke"]["secret"], revoke_key),
    ]:
        checks.append(check)
        ok += answered
    return checks, ok
