"""The recorder between the demo client and the real request log.

Every call really happens now, against a loopback server, under the name of a real provider:
the records are relabelled, backdated and given a plausible latency on their way to the log.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from apps.demo.summary import DemoSummary
from apps.llm.accounting.records import SUCCESS, CallRecord, Recorder

__all__ = ["DEMO_PROVIDER", "DemoRecorder", "Stamp"]

#: The provider every demo record is logged under; ``--reset`` deletes by it.
DEMO_PROVIDER = "simulator"


@dataclass(frozen=True)
class Stamp:
    """When a demo call is logged as having happened, and how long a real provider would take."""

    at: datetime
    #: None: keep the measured latency (local embeddings really run here).
    latency_ms: float | None = None
    error_latency_ms: float = 300.0
    #: Time to first token as a share of the latency, for streamed answers.
    first_token_share: float = 0.25


class DemoRecorder:
    """Relabels and backdates the demo client's records, then hands them to the real request log.

    Calls are made one at a time, so ``stamp`` (set before each call) belongs to the record(s)
    that call produces.

    Inside a demo trace the calls follow one another: with ``clock`` set, a record ends its
    modelled latency after ``clock`` (a row's time is when its call ended) and moves the clock
    there, so the trace's timeline shows its steps one after the other. ``stamp.at`` is then unused.
    """

    def __init__(self, inner: Recorder) -> None:
        self.inner = inner
        self.stamp: Stamp | None = None
        self.clock: datetime | None = None
        self.summary = DemoSummary()

    def record(self, call: CallRecord) -> None:
        call = self.relabel(call)
        self.summary.add(call)
        self.inner.record(call)

    def relabel(self, call: CallRecord) -> CallRecord:
        changes: dict[str, Any] = {"provider": DEMO_PROVIDER}
        stamp = self.stamp
        if stamp is not None:
            changes["created_at"] = stamp.at
            if stamp.latency_ms is not None and not call.cached:
                tries = max(call.attempts, 1)
                if call.status == SUCCESS:
                    latency = stamp.latency_ms + (tries - 1) * stamp.error_latency_ms
                else:
                    latency = tries * stamp.error_latency_ms
                changes["latency_ms"] = round(latency, 1)
                if call.time_to_first_token_ms is not None:
                    changes["time_to_first_token_ms"] = round(latency * stamp.first_token_share, 1)
        if self.clock is not None:
            self.clock += timedelta(milliseconds=changes.get("latency_ms", call.latency_ms))
            changes["created_at"] = self.clock
        return replace(call, **changes)

    def flush(self, timeout: float = 60.0) -> bool:
        flush = getattr(self.inner, "flush", None)
        return flush(timeout) if flush is not None else True
