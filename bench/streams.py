"""Streaming analysis: time to first token, total time, and whether the relay merged or
delayed any chunk, comparing streams through Anvil with streams straight from the backend."""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import dataclass

from bench.client import StreamRecord


@dataclass
class Parsed:
    ttft: float  # request sent → first event with generated content
    total: float  # request sent → data: [DONE]
    offsets: list[float]  # data events after the first token: arrival - first token's arrival
    reads: list[int]  # index of the socket read each of those events arrived in
    data_events: int  # data: events including [DONE]; comments (": ...") are not events
    content: str


def _content(payload: bytes) -> str:
    try:
        chunk = json.loads(payload)
    except ValueError:
        return ""
    choices = chunk.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def parse(record: StreamRecord) -> Parsed:
    data = [
        (arrival, read, event[len(b"data: ") :])
        for arrival, read, event in record.events
        if event.startswith(b"data: ")
    ]
    first = next(i for i, (_, _, payload) in enumerate(data) if _content(payload))
    start = data[first][0]
    body = data[first:-1]  # the tokens, the final chunk and the usage chunk; not [DONE]
    return Parsed(
        ttft=start - record.started,
        total=data[-1][0] - record.started,
        offsets=[arrival - start for arrival, _, _ in body],
        reads=[read for _, read, _ in body],
        data_events=len(data),
        content="".join(_content(payload) for _, _, payload in data),
    )


def merged(parsed: Parsed, tokens: int) -> int:
    """Token events that arrived in the same socket read as the token before them."""
    reads = parsed.reads[:tokens]
    return sum(1 for a, b in itertools.pairwise(reads) if a == b)


@dataclass
class Comparison:
    ttft_direct: float
    ttft_anvil: float
    ttfts_direct: list[float]  # every stream's, for the spread
    ttfts_anvil: list[float]
    total_direct: float
    total_anvil: float
    events_direct: set[int]
    events_anvil: set[int]
    same_content: bool
    merged_direct: int
    merged_anvil: int
    chunks: int  # chunks compared per side
    lateness_direct: list[float]  # per chunk, see _lateness
    lateness_anvil: list[float]
    gap_direct: float  # the largest gap between two consecutive chunks
    gap_anvil: float


def _lateness(runs: list[Parsed], reference: list[float]) -> list[float]:
    """How late each chunk came compared with the reference schedule, each stream aligned on
    its own earliest chunk (so a delayed first token shows as that chunk's lateness)."""
    result = []
    for run in runs:
        shifts = [offset - reference[i] for i, offset in enumerate(run.offsets[: len(reference)])]
        earliest = min(shifts)
        result += [shift - earliest for shift in shifts]
    return result


def _max_gap(runs: list[Parsed]) -> float:
    return max(b - a for run in runs for a, b in zip(run.offsets, run.offsets[1:], strict=False))


def compare(direct: list[Parsed], anvil: list[Parsed], *, tokens: int) -> Comparison:
    length = min(len(run.offsets) for run in direct + anvil)
    reference = [statistics.median(run.offsets[i] for run in direct) for i in range(length)]
    return Comparison(
        ttft_direct=statistics.median(run.ttft for run in direct),
        ttft_anvil=statistics.median(run.ttft for run in anvil),
        ttfts_direct=[run.ttft for run in direct],
        ttfts_anvil=[run.ttft for run in anvil],
        total_direct=statistics.median(run.total for run in direct),
        total_anvil=statistics.median(run.total for run in anvil),
        events_direct={run.data_events for run in direct},
        events_anvil={run.data_events for run in anvil},
        same_content=len({run.content for run in direct + anvil}) == 1,
        merged_direct=sum(merged(run, tokens) for run in direct),
        merged_anvil=sum(merged(run, tokens) for run in anvil),
        chunks=length * len(anvil),
        lateness_direct=_lateness(direct, reference),
        lateness_anvil=_lateness(anvil, reference),
        gap_direct=_max_gap(direct),
        gap_anvil=_max_gap(anvil),
    )
