"""The simulator's knobs: one frozen dataclass, changed only through `config_update`.

The management command and `POST /_sim/config` share `config_update`, so a knob is
validated the same way whether it comes from a flag or from a test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .structured import JSON_MODES, TOOL_MODES

# Knobs that can change while the server runs; host and port are fixed at start.
LIVE_KNOBS = (
    "latency_ms",
    "ttft_ms",
    "tokens_per_second",
    "completion_tokens",
    "failure_rate",
    "fail_status",
    "disconnect_after_tokens",
    "omit_usage",
    "usage_multiplier",
    "require_key",
    "sessions",
    "model_name",
    "seed",
    "quiet",
    "tool_mode",
    "json_mode",
    "fault_count",
    "parallel_calls",
)

# Changing one of these starts a fresh `fault_count` budget.
FAULT_KNOBS = frozenset({"tool_mode", "json_mode", "fault_count"})


@dataclass(frozen=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 0
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    tokens_per_second: float = 0.0
    completion_tokens: int = 16
    failure_rate: float = 0.0
    fail_status: int = 500
    disconnect_after_tokens: int = 0
    omit_usage: bool = False
    # Reported usage is the true count times this: a router over-reporting (1: honest).
    usage_multiplier: int = 1
    require_key: str = ""
    sessions: frozenset[int] | None = None
    model_name: str = "sim-model"
    seed: int | None = None
    quiet: bool = True
    # Tool-call and JSON answers (structured.py): how they go wrong; for how many answers
    # (-1: all of them; N >= 0: only the next N, then well-formed again); calls per answer.
    tool_mode: str = "call"
    json_mode: str = "valid"
    fault_count: int = -1
    parallel_calls: int = 1

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sessions"] = sorted(self.sessions) if self.sessions is not None else None
        data["require_key"] = bool(self.require_key)  # never echo the key itself
        return data


def config_update(config: SimConfig, changes: dict[str, Any]) -> SimConfig:
    """A copy of `config` with `changes` applied; raises ValueError naming the bad knob.

    Keys may use dashes or underscores (`latency-ms` or `latency_ms`).
    """
    clean: dict[str, Any] = {}
    for raw_name, value in changes.items():
        name = str(raw_name).replace("-", "_")
        if name not in LIVE_KNOBS:
            raise ValueError(f"unknown knob {raw_name!r}; one of: {', '.join(LIVE_KNOBS)}")
        clean[name] = _PARSERS[name](name, value)
    return dataclasses.replace(config, **clean)


def parse_sessions(value: Any) -> frozenset[int] | None:
    """`None`/`""` means any session; otherwise a list of ints or a string like "1,2,3"."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        try:
            return frozenset(int(part) for part in parts)
        except ValueError:
            raise ValueError(f"sessions must be integers, got {value!r}") from None
    if isinstance(value, list | tuple | set | frozenset) and all(_is_int(v) for v in value):
        return frozenset(value)
    raise ValueError(f"sessions must be a list of integers or '1,2,3', got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _non_negative_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _non_negative_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _fraction(name: str, value: Any) -> float:
    number = _non_negative_number(name, value)
    if number > 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return number


def _status(name: str, value: Any) -> int:
    if not _is_int(value) or not 400 <= value <= 599:
        raise ValueError(f"{name} must be an HTTP error status (400-599), got {value!r}")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _key(name: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _model_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _seed(name: str, value: Any) -> int | None:
    if value is not None and not _is_int(value):
        raise ValueError(f"{name} must be an integer or null, got {value!r}")
    return value


def _choice(options: tuple[str, ...]):
    def parse(name: str, value: Any) -> str:
        if value not in options:
            raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")
        return value

    return parse


def _fault_count(name: str, value: Any) -> int:
    if not _is_int(value) or value < -1:
        raise ValueError(f"{name} must be an integer >= -1 (-1: always), got {value!r}")
    return value


def _positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


_PARSERS = {
    "latency_ms": _non_negative_number,
    "ttft_ms": _non_negative_number,
    "tokens_per_second": _non_negative_number,
    "completion_tokens": _non_negative_int,
    "failure_rate": _fraction,
    "fail_status": _status,
    "disconnect_after_tokens": _non_negative_int,
    "omit_usage": _bool,
    "usage_multiplier": _positive_int,
    "require_key": _key,
    "sessions": lambda name, value: parse_sessions(value),
    "model_name": _model_name,
    "seed": _seed,
    "quiet": _bool,
    "tool_mode": _choice(TOOL_MODES),
    "json_mode": _choice(JSON_MODES),
    "fault_count": _fault_count,
    "parallel_calls": _positive_int,
}
