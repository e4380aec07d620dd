"""The benchmark's printed report: the side-by-side table, the streaming lines, the targets."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.streams import Comparison

if TYPE_CHECKING:
    from bench.measure import Measured

TARGET_MS = 2.0
MACHINE_TARGET_MS = 1.5  # Anvil + PostgreSQL + Redis CPU per request at c=MACHINE_CONCURRENCY
MACHINE_CONCURRENCY = 8


@dataclass
class Side:
    """One target (direct or Anvil) at one concurrency, summed over its rounds."""

    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    # process name → CPU seconds; "redis_connections" → connections the Redis server accepted
    meters: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def ms(self, q: float) -> float:
        return 1000 * quantile(self.latencies, q)

    def cpu_ms(self, name: str) -> float:
        return 1000 * self.meters.get(name, 0.0) / max(len(self.latencies), 1)

    def rate(self, name: str) -> float:
        """CPU seconds of ``name`` per second of this side's runs."""
        return self.meters.get(name, 0.0) / max(self.elapsed, 1e-9)


@dataclass
class Scenario:
    concurrency: int
    direct: Side = field(default_factory=Side)
    anvil: Side = field(default_factory=Side)

    @property
    def added_p50(self) -> float:
        return self.anvil.ms(0.5) - self.direct.ms(0.5)

    def service_ms(self, name: str) -> float:
        """CPU ms per request through Anvil of a shared service (PostgreSQL, Redis), less its
        background rate measured during the direct runs (which use neither)."""
        own = self.anvil.meters.get(name, 0.0) - self.direct.rate(name) * self.anvil.elapsed
        return 1000 * own / max(len(self.anvil.latencies), 1)

    @property
    def machine_ms(self) -> float:
        """The whole machine's CPU per request that Anvil adds: Anvil, PostgreSQL, Redis."""
        return self.anvil.cpu_ms("anvil") + self.service_ms("postgres") + self.service_ms("redis")

    @property
    def redis_connections_per_request(self) -> float:
        """Through Anvil, less the background rate of other Redis users seen in direct runs."""
        background = self.direct.meters.get("redis_connections", 0) / max(self.direct.elapsed, 1e-9)
        own = self.anvil.meters.get("redis_connections", 0) - background * self.anvil.elapsed
        return own / max(len(self.anvil.latencies), 1)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(scenarios: list[Scenario]) -> str:
    head = (
        f"{'scenario':<9}| {'direct rps':>10} {'p50':>6} {'p95':>6} {'p99':>6} "
        f"| {'Anvil rps':>9} {'p50':>6} {'p95':>6} {'p99':>6} | {'added p50':>9} "
        f"| {'Anvil CPU':>9} | {'PG CPU':>6} {'Redis':>6} {'all':>6} "
        f"| {'backend CPU':>11} | {'client CPU':>10}"
    )
    units = (
        f"{'':<9}| {'':>10} {'ms':>6} {'ms':>6} {'ms':>6} | {'':>9} {'ms':>6} {'ms':>6} "
        f"{'ms':>6} | {'ms':>9} | {'ms/req':>9} | {'ms/req':>6} {'':>6} {'':>6} "
        f"| {'ms/req d/A':>11} | {'ms/req d/A':>10}"
    )
    lines = [head, units, "-" * len(head)]
    for s in scenarios:
        d, a = s.direct, s.anvil
        lines.append(
            f"{f'c={s.concurrency}':<9}| {d.rps:>10.0f} {d.ms(0.5):>6.2f} {d.ms(0.95):>6.2f} "
            f"{d.ms(0.99):>6.2f} | {a.rps:>9.0f} {a.ms(0.5):>6.2f} {a.ms(0.95):>6.2f} "
            f"{a.ms(0.99):>6.2f} | {s.added_p50:>9.2f} | {a.cpu_ms('anvil'):>9.2f} | "
            f"{s.service_ms('postgres'):>6.2f} {s.service_ms('redis'):>6.2f} "
            f"{s.machine_ms:>6.2f} | "
            f"{_pair(s, 'backend'):>11} | {_pair(s, 'client'):>10}"
        )
        errors = {**{f"direct {k}": v for k, v in d.errors.items()}}
        errors.update({f"Anvil {k}": v for k, v in a.errors.items()})
        if errors:
            lines.append(f"{'':<9}  errors: {errors}")
    counts = "; ".join(
        f"c={s.concurrency} direct {len(s.direct.latencies)}, Anvil {len(s.anvil.latencies)}"
        for s in scenarios
    )
    lines.append(f"requests measured: {counts}")
    return "\n".join(lines)


def workers_table(single: list[Scenario], many: list[Scenario], workers: int) -> str:
    """Through Anvil, one worker process beside ``workers``, scenario by scenario."""
    n = f"{workers}w"
    head = (
        f"{'scenario':<9}| {'rps 1w':>7} {f'rps {n}':>7} {f'{n}/1w':>6} "
        f"| {'p50 1w':>6} {n:>6} | {'p95 1w':>6} {n:>6} | {'p99 1w':>6} {n:>6} "
        f"| {'Anvil CPU 1w':>12} {n:>6}"
    )
    units = (
        f"{'':<9}| {'':>7} {'':>7} {'':>6} | {'ms':>6} {'ms':>6} | {'ms':>6} {'ms':>6} "
        f"| {'ms':>6} {'ms':>6} | {'ms/req':>12} {'ms/req':>6}"
    )
    lines = [head, units, "-" * len(head)]
    for one, all_ in zip(single, many, strict=True):
        a, b = one.anvil, all_.anvil
        ratio = b.rps / a.rps if a.rps else float("nan")
        lines.append(
            f"{f'c={one.concurrency}':<9}| {a.rps:>7.0f} {b.rps:>7.0f} {ratio:>6.2f} "
            f"| {a.ms(0.5):>6.2f} {b.ms(0.5):>6.2f} | {a.ms(0.95):>6.2f} {b.ms(0.95):>6.2f} "
            f"| {a.ms(0.99):>6.2f} {b.ms(0.99):>6.2f} "
            f"| {a.cpu_ms('anvil'):>12.2f} {b.cpu_ms('anvil'):>6.2f}"
        )
    return "\n".join(lines)


def _pair(s: Scenario, name: str) -> str:
    return f"{s.direct.cpu_ms(name):.2f}/{s.anvil.cpu_ms(name):.2f}"


def stream_lines(c: Comparison, *, streams: int, tokens: int, anvil_cpu_ms: float) -> str:
    def ms(seconds: float) -> str:
        return f"{1000 * seconds:.2f} ms"

    late_d, late_a = c.lateness_direct, c.lateness_anvil
    return "\n".join(
        [
            f"Streaming chat, {tokens} tokens at 1000 tokens/s, {streams} streams each, "
            "one at a time, direct and Anvil alternating (p50):",
            f"  time to first token  direct {ms(c.ttft_direct)}   Anvil {ms(c.ttft_anvil)}   "
            f"adds {ms(c.ttft_anvil - c.ttft_direct)}",
            f"    its spread, p25 / p75: direct {_spread(c.ttfts_direct)}   "
            f"Anvil {_spread(c.ttfts_anvil)}",
            f"  total time           direct {ms(c.total_direct)}   Anvil {ms(c.total_anvil)}   "
            f"adds {ms(c.total_anvil - c.total_direct)}",
            f"  SSE data events per stream: direct {sorted(c.events_direct)}, "
            f"Anvil {sorted(c.events_anvil)}; content identical: {c.same_content}",
            f"  token chunks that arrived in one read with the chunk before: "
            f"direct {c.merged_direct}, Anvil {c.merged_anvil} (of {streams * (tokens - 1)})",
            f"  chunk lateness vs the direct median schedule ({c.chunks} chunks per side): "
            f"direct p50 {ms(statistics.median(late_d))} p99 {ms(_q(late_d, 0.99))} "
            f"max {ms(max(late_d))}; Anvil p50 {ms(statistics.median(late_a))} "
            f"p99 {ms(_q(late_a, 0.99))} max {ms(max(late_a))}",
            f"  largest gap between two chunks: direct {ms(c.gap_direct)}, Anvil {ms(c.gap_anvil)}",
            f"  Anvil CPU per stream: {anvil_cpu_ms:.2f} ms",
        ]
    )


def _spread(values: list[float]) -> str:
    return f"{1000 * _q(values, 0.25):.2f} / {1000 * _q(values, 0.75):.2f} ms"


def _q(values: list[float], q: float) -> float:
    return quantile(values, q)


@dataclass
class Check:
    passed: bool
    text: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.text}"


def diagnostics(measured: Measured, extra: dict) -> str:
    redis = ", ".join(
        f"c={s.concurrency} {s.redis_connections_per_request:.2f}" for s in measured.scenarios
    )
    per_request = extra["pg_transactions"] / max(measured.anvil_ok, 1)
    return "\n".join(
        [
            "Diagnostics:",
            f"  new Redis connections per request through Anvil: {redis} (server-wide count,"
            " less the background rate measured during the direct runs)",
            f"  PostgreSQL transactions per request through Anvil: {per_request:.2f} "
            f"({extra['pg_transactions']} for {measured.anvil_ok} requests, warm-ups included)",
            f"  Anvil threads at the end: {extra['anvil_threads']}",
            f"  Anvil's answers other than 200, warm-ups included: {measured.anvil_failed or 0}",
        ]
    )


def checks(measured: Measured, ledger: dict) -> list[Check]:
    scenarios, c, anvil_ok = measured.scenarios, measured.streaming, measured.anvil_ok
    first = min(scenarios, key=lambda s: s.concurrency)
    worst = max(scenarios, key=lambda s: s.anvil.cpu_ms("anvil"))
    added_ttft = 1000 * (c.ttft_anvil - c.ttft_direct)
    extra_p99 = 1000 * (_q(c.lateness_anvil, 0.99) - _q(c.lateness_direct, 0.99))
    merge_slack = max(1, c.chunks // 100)
    relay_ok = (
        c.events_anvil == c.events_direct
        and c.same_content
        and c.merged_anvil <= c.merged_direct + merge_slack
        and extra_p99 <= TARGET_MS
    )
    failed = sum(measured.anvil_failed.values())
    ledger_ok = (
        ledger["ledger_ok"] == anvil_ok
        and ledger["ledger_rows"] == anvil_ok + failed  # a refused request has a free row
        and not ledger["mismatches"]
        and ledger["open_holds"] == 0
    )
    machine = [
        Check(
            s.machine_ms <= MACHINE_TARGET_MS,
            f"whole machine's CPU per request at c={s.concurrency}: {s.machine_ms:.2f} ms "
            f"(Anvil {s.anvil.cpu_ms('anvil'):.2f} + PostgreSQL {s.service_ms('postgres'):.2f} + "
            f"Redis {s.service_ms('redis'):.2f}; target <= {MACHINE_TARGET_MS:g} ms)",
        )
        for s in scenarios
        if s.concurrency == MACHINE_CONCURRENCY
    ]
    return machine + [
        Check(
            first.added_p50 <= TARGET_MS,
            f"added p50 latency at c={first.concurrency}: {first.added_p50:.2f} ms "
            f"(target <= {TARGET_MS:g} ms)",
        ),
        Check(
            worst.anvil.cpu_ms("anvil") <= TARGET_MS,
            f"Anvil server CPU per request: worst {worst.anvil.cpu_ms('anvil'):.2f} ms at "
            f"c={worst.concurrency} (target <= {TARGET_MS:g} ms)",
        ),
        Check(
            added_ttft <= TARGET_MS,
            f"streaming adds {added_ttft:.2f} ms to the first token (target <= {TARGET_MS:g} ms)",
        ),
        Check(
            relay_ok,
            "no merged or delayed chunks: same SSE event count and content as direct, merged "
            f"reads {c.merged_anvil} vs direct {c.merged_direct} (+{merge_slack} allowed), "
            f"p99 chunk lateness {extra_p99:+.2f} ms vs direct (target <= {TARGET_MS:g} ms)",
        ),
        Check(
            ledger_ok,
            f"ledger: {ledger['ledger_rows']} rows ({ledger['ledger_ok']} ok) for {anvil_ok} "
            f"successful and {failed} failed requests through Anvil; "
            f"{ledger['open_holds']} open holds; counters "
            f"vs ledger: {len(ledger['mismatches'])} mismatches {ledger['mismatches'][:3]}",
        ),
    ]
