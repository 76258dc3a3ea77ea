"""What accounting every call in the database costs the caller.

The same `chat_completion` (cache=False) against the same loopback simulator, in the same run,
interleaved in rotating order: with no recorder (`recorders=[]`), with the default asynchronous
`DatabaseRecorder` (a line appended to a spool file in a temporary directory + a queue put; a
background thread writes batches) and, for context, with `SyncDatabaseRecorder` (the INSERT
and the rollup upsert in the calling thread). A second table times `record()` alone.

Every row written carries a unique feature label ("bench.logging.<run>.<recorder>"); at the end
the asynchronous recorder is flushed, the rows and their rollups are counted against what was
sent, and both are deleted again (the rollup grain includes the feature, so the rollup rows
with these labels hold nothing but this run's calls).

    .venv/bin/python bench/bench_logging.py [--calls 500] [--warmup 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _setup import setup_django, summary, table

setup_django()

from django.conf import settings  # noqa: E402
from django.core.cache.backends.locmem import LocMemCache  # noqa: E402
from django.db.models import Sum  # noqa: E402

from apps.llm.accounting import request_log  # noqa: E402
from apps.llm.accounting.records import SUCCESS, CallRecord  # noqa: E402
from apps.llm.accounting.request_log import DatabaseRecorder, SyncDatabaseRecorder  # noqa: E402
from apps.llm.client import LLMClient  # noqa: E402
from apps.llm.models import LLMRequest, LLMUsageDaily  # noqa: E402
from apps.llm.testing.simulator import OpenAISimulator  # noqa: E402
from apps.llm.types import Usage  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Summarise the plot of Hamlet in two sentences."},
]
MODEL = "gpt-4o-mini"


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def make_client(sim: OpenAISimulator, recorders: list) -> LLMClient:
    return LLMClient(
        apikey_openai="sk-bench",
        openai_base_url=sim.base_url,
        configure_from_env=False,
        cache_backend=LocMemCache(f"bench-{uuid.uuid4().hex[:6]}", {}),
        recorders=recorders,
    )


class WriterStats:
    """Wraps request_log.write_records to see the batches the writer thread makes and its CPU time."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.cpu = 0.0
        self.wall = 0.0
        self._original = request_log.write_records

    def __enter__(self) -> WriterStats:
        def counted(records, **kwargs):
            if threading.current_thread().name != "llm-request-log":
                return self._original(records, **kwargs)
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return self._original(records, **kwargs)
            finally:
                self.cpu += time.thread_time() - cpu
                self.wall += time.perf_counter() - wall
                self.batches.append(len(records))

        request_log.write_records = counted
        return self

    def __exit__(self, *exc) -> None:
        request_log.write_records = self._original


def paired_median(times: list[float], base: list[float]) -> float:
    """Median (ms) of the per-round difference to the baseline call of the same round."""
    return statistics.median(t - b for t, b in zip(times, base)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:12]
    label = f"bench.logging.{run}"
    options = {"store_text": settings.LLM["STORE_TEXT"], "text_limit": settings.LLM["TEXT_LIMIT"]}
    sent = {"async": 0, "sync": 0, "record": 0}

    try:
        with tempfile.TemporaryDirectory() as tmp, OpenAISimulator() as sim:
            async_recorder = DatabaseRecorder(Path(tmp) / "spool", **options)
            sync_recorder = SyncDatabaseRecorder(**options)
            cases = {  # name -> (client, feature, counter key)
                "none": (make_client(sim, []), f"{label}.none", None),
                "async": (make_client(sim, [async_recorder]), f"{label}.async", "async"),
                "sync": (make_client(sim, [sync_recorder]), f"{label}.sync", "sync"),
            }
            names = list(cases)

            def call(name: str) -> float:
                client, feature, counter = cases[name]
                elapsed = timed(lambda: client.chat_completion(MESSAGES, MODEL, cache=False, feature=feature))
                if counter:
                    sent[counter] += 1
                return elapsed

            try:
                for _ in range(args.warmup):  # connections, price table, tokenizer, writer thread
                    for name in names:
                        call(name)
                async_recorder.flush()
                times: dict[str, list[float]] = {name: [] for name in names}
                with WriterStats() as writer:
                    for i in range(args.calls):
                        order = names[i % 3 :] + names[: i % 3]  # rotate who goes first
                        for name in order:
                            times[name].append(call(name))
                    flushed_started = time.perf_counter()
                    flushed = async_recorder.flush(timeout=60)
                    flush_ms = (time.perf_counter() - flushed_started) * 1000

                # record() alone, on a finished call's record: the caller's whole share of the async path.
                record_feature = f"{label}.record"
                template = {
                    "endpoint": "chat",
                    "provider": "openai",
                    "requested_model": MODEL,
                    "model": "gpt-4o-mini-2024-07-18",
                    "status": SUCCESS,
                    "usage": Usage(prompt_tokens=25, completion_tokens=40, total_tokens=65),
                    "latency_ms": 3.2,
                    "attempts": 1,
                    "cache_key": "llm:v1:" + "0" * 64,
                    "key_fingerprint": "0" * 12,
                    "feature": record_feature,
                    "prompt": MESSAGES,
                    "response_text": "Prince Hamlet avenges his father's murder. Almost everyone dies.",
                }
                record_times = []
                for _ in range(args.calls):
                    rec = CallRecord(**template)
                    record_times.append(timed(lambda: async_recorder.record(rec)))
                    sent["record"] += 1
                flushed = async_recorder.flush(timeout=60) and flushed
            finally:
                async_recorder.close()
                for client, _, _ in cases.values():
                    client.close()

        base_med, base_p95 = summary(times["none"])
        rows = [["no accounting (recorders=[])", base_med, base_p95, 0.0, 0.0, 0.0, 1.0, ""]]
        for name, title, target in (
            ("async", "async DatabaseRecorder (default)", "< 1 ms median added"),
            ("sync", "SyncDatabaseRecorder (context)", ""),
        ):
            med, p95 = summary(times[name])
            rows.append(
                [
                    title,
                    med,
                    p95,
                    med - base_med,
                    p95 - base_p95,
                    paired_median(times[name], times["none"]),
                    med / base_med,
                    target,
                ]
            )
        print(
            f"Accounting overhead of chat_completion(cache=False), {args.calls} interleaved calls each after "
            f"{args.warmup} warm-up rounds, loopback simulator, store_text={options['store_text']}\n"
        )
        print(
            table(
                [
                    "case",
                    "median ms",
                    "p95 ms",
                    "added median ms",
                    "added p95 ms",
                    "paired added ms",
                    "ratio",
                    "target",
                ],
                rows,
            )
        )
        print(
            "\n(added = the difference of the medians and of the p95s to the no-accounting row; paired = the "
            "median of the per-round differences to the no-accounting call of the same round)"
        )

        rec_med, rec_p95 = summary(record_times)
        print(f"\nDatabaseRecorder.record() alone, {args.calls} calls (the writer thread running meanwhile)\n")
        print(
            table(
                ["case", "median ms", "p95 ms"], [["record(): JSON line + spool write + queue put", rec_med, rec_p95]]
            )
        )
        batches = writer.batches
        print(
            f"\nAsync writer during the timed loop: {len(batches)} batches (transactions) for "
            f"{sum(batches)} records, "
            f"median batch {statistics.median(batches) if batches else 0:g}, max {max(batches, default=0)}; "
            f"writer thread CPU {writer.cpu * 1000 / max(1, sum(batches)):.3f} ms and wall "
            f"{writer.wall * 1000 / max(1, sum(batches)):.3f} ms per record; "
            f"flush after the loop took {flush_ms:.1f} ms; {async_recorder.failures} write failures"
        )

        # Correctness: exactly one row per call, and the rollups add up; then remove all of it.
        expected = {
            f"{label}.async": sent["async"],
            f"{label}.sync": sent["sync"],
            f"{label}.record": sent["record"],
            f"{label}.none": 0,
        }
        logged = {f: LLMRequest.objects.filter(feature=f).count() for f in expected}
        rolled = {f: LLMUsageDaily.objects.filter(feature=f).aggregate(n=Sum("requests"))["n"] or 0 for f in expected}
        print("\nRows written\n")
        print(
            table(
                ["feature", "calls", "LLMRequest rows", "rollup requests"],
                [[f, expected[f], logged[f], rolled[f]] for f in expected],
            )
        )
        assert flushed, "the async recorder did not drain within 60 s"
        assert logged == expected, f"request log rows {logged} != calls {expected}"
        assert rolled == expected, f"rollup requests {rolled} != calls {expected}"

    finally:  # also after a failure: the recorder is closed by then, so nothing arrives later
        deleted_rows, _ = LLMRequest.objects.filter(feature__startswith=label).delete()
        deleted_rollups, _ = LLMUsageDaily.objects.filter(feature__startswith=label).delete()
        print(
            f"\nCleaned up: {deleted_rows} LLMRequest rows and {deleted_rollups} LLMUsageDaily rows "
            f"with feature {label}.*"
        )


if __name__ == "__main__":
    main()
