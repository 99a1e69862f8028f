"""Counters behind `GET /_sim/stats`, so tests can see what reached the router."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

RECENT_REFERENCES = 1000
RECENT_COMPLETIONS = 50


class SimStats:
    """Counts every request except the `/_sim/` control calls themselves."""

    def __init__(self) -> None:
        self.in_flight = 0  # survives reset: those requests are still running
        self.reset()

    def reset(self) -> None:
        self.since = time.time()
        self.requests_total = 0
        self.by_path: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.max_in_flight = self.in_flight
        self.completions = 0
        self.failures_injected = 0
        self.streams_started = 0
        self.streams_completed = 0
        self.streams_dropped = 0  # cut by --disconnect-after-tokens
        self.streams_abandoned = 0  # the client went away mid-stream
        self.tool_call_answers = 0  # a call was due (answers spoilt by tool_mode included)
        self.tool_result_answers = 0  # the answer after a tool result
        self.json_answers = 0  # an output format was asked for
        self.answer_faults_injected = 0  # answers spoilt by tool_mode / json_mode
        self.client_references: deque[str] = deque(maxlen=RECENT_REFERENCES)
        # The last few accepted completion requests, for tests that check what was forwarded.
        self.recent_completions: deque[dict[str, Any]] = deque(maxlen=RECENT_COMPLETIONS)

    def request_started(self, path: str) -> None:
        self.requests_total += 1
        self.by_path[path] += 1

    def completion_started(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def completion_finished(self) -> None:
        self.in_flight -= 1

    def completion_accepted(
        self, *, path: str, session_id: int, authorization_sent: bool, body: dict[str, Any]
    ) -> None:
        self.completions += 1
        reference = body.get("client_reference")
        if reference:
            self.client_references.append(reference)
        self.recent_completions.append(
            {
                "path": path,
                "session_id": session_id,
                "authorization_sent": authorization_sent,
                "body": body,
            }
        )

    def structured_answered(self, *, kind: str, faulty: bool) -> None:
        if kind == "tool_call":
            self.tool_call_answers += 1
        elif kind == "tool_result":
            self.tool_result_answers += 1
        else:
            self.json_answers += 1
        if faulty:
            self.answer_faults_injected += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "requests_total": self.requests_total,
            "by_path": dict(self.by_path),
            "by_status": {str(status): count for status, count in self.by_status.items()},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "completions": self.completions,
            "failures_injected": self.failures_injected,
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_dropped": self.streams_dropped,
            "streams_abandoned": self.streams_abandoned,
            "tool_call_answers": self.tool_call_answers,
            "tool_result_answers": self.tool_result_answers,
            "json_answers": self.json_answers,
            "answer_faults_injected": self.answer_faults_injected,
            "client_references": list(self.client_references),
            "recent_completions": list(self.recent_completions),
        }
