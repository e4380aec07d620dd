"""How one request is served: server defaults, then the model-name suffix, then headers."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from devbackend.wire import BadRequest

FAULT_RE = re.compile(
    r"^(?:error-(?P<status>[45]\d\d)|(?P<kind>drop|stall)-after:(?P<n>\d+)|(?P<flag>no-usage|floats-only))$"
)
SUFFIX_KEYS = {"fault": "fault", "latency-ms": "latency_ms", "tokens-per-second": "tps"}
HEADER_KEYS = {
    b"x-dev-fault": "fault",
    b"x-dev-latency-ms": "latency_ms",
    b"x-dev-tokens-per-second": "tps",
}


@dataclass(frozen=True)
class Fault:
    kind: str  # "error", "drop", "stall", "no-usage" or "floats-only"
    status: int = 0
    after: int = 0


@dataclass(frozen=True)
class Plan:
    latency_ms: float = 0.0
    tps: float = 0.0  # 0 = unlimited
    fault: Fault | None = None

    @property
    def reports_usage(self) -> bool:
        return self.fault is None or self.fault.kind != "no-usage"

    @property
    def floats_only(self) -> bool:
        """Embeddings come as floats whatever ``encoding_format`` asks (as some servers do)."""
        return self.fault is not None and self.fault.kind == "floats-only"

    def cut_after(self, kind: str) -> int | None:
        """Token count after which a drop/stall fault of ``kind`` strikes, else None."""
        if self.fault is not None and self.fault.kind == kind:
            return self.fault.after
        return None


def fault_parse(*, text: str) -> Fault:
    match = FAULT_RE.match(text.strip())
    if match is None:
        raise BadRequest(
            f"Unknown dev fault {text!r}: use error-<status>, drop-after:N, stall-after:N "
            "no-usage or floats-only."
        )
    if match["status"]:
        return Fault(kind="error", status=int(match["status"]))
    if match["kind"]:
        return Fault(kind=match["kind"], after=int(match["n"]))
    return Fault(kind=match["flag"])


def _number(*, name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise BadRequest(f"Dev option {name} must be a non-negative number, got {text!r}.")
    return value


def _apply(plan: Plan, *, key: str, text: str) -> Plan:
    if key == "fault":
        return dataclasses.replace(plan, fault=fault_parse(text=text))
    return dataclasses.replace(plan, **{key: _number(name=key, text=text)})


def model_split(*, model: str) -> tuple[str, dict[str, str]]:
    """``"m@fault=x,latency-ms=5"`` → ``("m", {"fault": "x", "latency_ms": "5"})``."""
    name, sep, suffix = model.rpartition("@")
    if not sep or "=" not in suffix:
        return model, {}
    options = {}
    for item in suffix.split(","):
        key, _, value = item.partition("=")
        if key.strip() not in SUFFIX_KEYS:
            raise BadRequest(
                f"Unknown dev option {key!r} in model name; use {', '.join(SUFFIX_KEYS)}.",
                param="model",
            )
        options[SUFFIX_KEYS[key.strip()]] = value
    return name, options


def plan_build(*, defaults: Plan, model: str, headers: dict[bytes, bytes]) -> Plan:
    plan = defaults
    for key, text in model_split(model=model)[1].items():
        plan = _apply(plan, key=key, text=text)
    for header, key in HEADER_KEYS.items():
        if header in headers:
            plan = _apply(plan, key=key, text=headers[header].decode("latin-1"))
    return plan
