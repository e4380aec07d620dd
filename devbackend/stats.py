"""Counters over the inference endpoints, read by tests through ``GET /dev/stats``."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Stats:
    in_flight: int = 0
    max_in_flight: int = 0
    requests: int = 0
    cancelled: int = 0

    def begin(self) -> None:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self, *, cancelled: bool) -> None:
        self.in_flight -= 1
        self.cancelled += cancelled

    def reset(self) -> None:
        self.requests = self.cancelled = 0
        self.max_in_flight = self.in_flight

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
