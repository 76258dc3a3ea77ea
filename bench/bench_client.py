"""What `LLMClient` costs over the raw `openai` SDK, measured as production runs it (issue 13).

One process, the loopback `OpenAISimulator` answering at once (no provider delay), so what is
left is the clients' own cost. As in production: the request log on (one process-wide
asynchronous `DatabaseRecorder`, its spool in a temporary directory, writing to PostgreSQL),
`store_text` off, `DEBUG` off, the real cache backends (Django's file cache, and Redis at
127.0.0.1:6379 when it answers). The log goes to a scratch database on the project's server
(`bench_client`: created and migrated at start, dropped at the end), so the development data is
never touched; every logged call carries a feature tag of this run (`bench.client.<run>.*`).

1. Uncached chat (`cache=False`): each round calls the raw SDK, LLMClient with the log on and
   LLMClient with the log off (the reference) once, in a shuffled order; median and p99 latency
   and CPU per call.
2. Cache hits with the log on, file and Redis, beside the backend's own `get` of the entry.
3. 16 threads: calls/s and p99 of the raw SDK and of LLMClient (log on), in timed phases in
   ABBA order.
4. 8 threads x 200 calls over 10 distinct prompts (cache on): provider calls the simulator saw.
5. Startup in fresh subprocesses, and the heavy modules a chat call imports.
Then the recorder is flushed and the log counted against the calls made, per tag.

The targets are issue 13's; the PASS/FAIL marks report what today's code does, they gate nothing.

    .venv/bin/python bench/bench_client.py [--rounds 2000] [--hit-calls 2000] [--threads 16]
        [--thread-seconds 4] [--thread-phases 2] [--startup-runs 5] [--profile 2000] [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _setup import ROOT, summary, table
from bench_usage_stats import drop_database, open_scratch_database


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="uncached rounds (one call of each client)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed rounds before each timed loop")
    parser.add_argument("--hit-calls", type=int, default=2000, help="timed cache hits per backend")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--thread-seconds", type=float, default=4.0, help="length of one timed threaded phase")
    parser.add_argument("--thread-phases", type=int, default=2, help="timed threaded phases per client")
    parser.add_argument("--coalesce-threads", type=int, default=8)
    parser.add_argument("--coalesce-calls", type=int, default=200, help="calls per thread, over 10 prompts")
    parser.add_argument("--startup-runs", type=int, default=5, help="fresh subprocesses per startup case")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile N logged calls at the end")
    parser.add_argument("--store-text", action="store_true", help="log prompt and answer text (development's default)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffled order (default: random)")
    parser.add_argument("--db", default="bench_client", help="the scratch database's name (bench_...)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds per section")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.hit_calls = 200, 20, 200
        args.thread_seconds, args.thread_phases = 1.0, 1
        args.coalesce_calls, args.startup_runs = 50, 1
    if args.coalesce_threads > args.threads:
        parser.error("--coalesce-threads must not exceed --threads (they share one pool)")
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


# Before Django starts: the scratch database decides what "default" is.
ARGS = parse_args()
with redirect_stdout(io.StringIO()):  # migrate's data migrations talk
    MAINTENANCE_URL = open_scratch_database(ARGS.db, reuse=False)

import openai  # noqa: E402
import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.cache import BaseCache  # noqa: E402
from django.core.cache.backends.redis import RedisCache  # noqa: E402
from django.db.models import Sum  # noqa: E402

from apps.llm.accounting import request_log  # noqa: E402
from apps.llm.accounting.context import llm_context  # noqa: E402
from apps.llm.accounting.request_log import DatabaseRecorder  # noqa: E402
from apps.llm.cache import file_cache  # noqa: E402
from apps.llm.client import LLMClient  # noqa: E402
from apps.llm.models import LLMRequest, LLMUsageDaily  # noqa: E402
from apps.llm.testing.simulator import CHAT, OpenAISimulator  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Summarise the plot of Hamlet in two sentences."},
]
MODEL = "gpt-4o-mini"
REDIS_URL = "redis://127.0.0.1:6379/14"
#: The name DatabaseRecorder gives its writer thread (apps/llm/accounting/request_log.py).
WRITER_THREAD = "llm-request-log"
#: Modules a chat call should not need (issue 13: lazy imports), checked in a fresh process.
#: Top-level packages of this project (an import chain through them is the project's doing).
PROJECT_PACKAGES = ("apps", "config")
HEAVY_MODULES = (
    "onnxruntime",
    "tokenizers",
    "huggingface_hub",
    "transformers",
    "pypdf",
    "numpy",
    "docx",
    "bs4",
    "lxml",
    "PIL",
    "pandas",
    "tiktoken",
)

RAW = "raw openai SDK"
LOG_ON = "LLMClient, log on"
LOG_OFF = "LLMClient, log off (reference)"

# Issue 13's targets.
UNCACHED_MEDIAN_RATIO = 1.10
UNCACHED_CPU_RATIO = 1.3
HIT_MEDIAN_MS = 0.1
THREADS_THROUGHPUT_RATIO = 0.85
THREADS_P99_RATIO = 1.5
COALESCE_PROMPTS = 10


# -- measuring -----------------------------------------------------------------------------------


@dataclass
class Samples:
    """Per-call wall time and CPU time of the calling thread, in seconds."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def measure(self, call: Callable[[], object]) -> None:
        # The thread's own CPU clock: the process's would also count the simulator's server
        # threads and the log writer, whose work lands on whichever call happens to be running.
        cpu, started = time.thread_time(), time.perf_counter()
        call()
        self.wall.append(time.perf_counter() - started)
        self.cpu.append(time.thread_time() - cpu)

    def cpu_ms(self) -> float:
        return sum(self.cpu) / len(self.cpu) * 1000


def writer_cpu() -> float:
    """CPU seconds the request log's writer thread has used so far (its own clock)."""
    idents = [t.ident for t in threading.enumerate() if t.name == WRITER_THREAD and t.ident]
    return sum(time.clock_gettime(time.pthread_getcpuclockid(ident)) for ident in idents)


@dataclass
class Phase:
    """One timed phase of many threads calling at once."""

    calls: int
    elapsed: float
    latencies: list[float]
    cpu: float  # the calling threads' CPU seconds, summed


def run_phase(
    pool: ThreadPoolExecutor, threads: int, seconds: float, call: Callable[[], object], feature: str | None
) -> Phase:
    """``threads`` threads calling ``call`` in a loop for ``seconds``, all released at once."""
    start = threading.Barrier(threads + 1)
    deadline = float("inf")  # set just before the barrier opens

    def worker() -> tuple[list[float], float]:
        latencies = []
        # Worker threads do not inherit the caller's context: the tag is set in each.
        with llm_context(feature=feature) if feature else nullcontext():
            start.wait()
            cpu = time.thread_time()
            while (began := time.perf_counter()) < deadline:
                call()
                latencies.append(time.perf_counter() - began)
            return latencies, time.thread_time() - cpu

    futures = [pool.submit(worker) for _ in range(threads)]
    started = time.perf_counter()
    deadline = started + seconds
    start.wait()
    results = [f.result() for f in futures]
    elapsed = time.perf_counter() - started
    latencies = [t for lat, _ in results for t in lat]
    return Phase(len(latencies), elapsed, latencies, sum(cpu for _, cpu in results))


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    sim: OpenAISimulator
    recorder: DatabaseRecorder
    tmp: Path
    pool: ThreadPoolExecutor
    tag: str
    rng: random.Random
    redis_ok: bool
    #: Logged calls made, by feature tag: what the request log must hold at the end.
    made: Counter[str] = field(default_factory=Counter)
    #: (target, measured, wanted, mark) for the closing summary.
    verdicts: list[list[object]] = field(default_factory=list)

    def feature(self, name: str) -> str:
        return f"{self.tag}.{name}"

    def verdict(self, what: str, measured: str, wanted: str, ok: bool) -> str:
        mark = "PASS" if ok else "FAIL"
        self.verdicts.append([what, measured, wanted, mark])
        return mark

    def backends(self, purpose: str) -> dict[str, BaseCache]:
        """Fresh, empty cache backends as the project configures them (config/project.py `_cache`)."""
        found: dict[str, BaseCache] = {
            "file": file_cache(self.tmp / f"cache-{purpose}", ttl=3600, max_entries=1000),
        }
        if self.redis_ok:
            found["redis"] = RedisCache(REDIS_URL, {"KEY_PREFIX": self.feature(purpose)})
        return found

    def client(self, backend: BaseCache, *, log: bool) -> LLMClient:
        return LLMClient(
            apikey_openai="sk-bench",
            openai_base_url=self.sim.base_url,
            configure_from_env=False,
            cache_backend=backend,
            recorders=[self.recorder] if log else [],
        )

    def raw_sdk(self) -> openai.OpenAI:
        # Built as LLMClient builds its own SDK client (transport/providers.py): no SDK retries.
        return openai.OpenAI(base_url=self.sim.base_url, api_key="sk-bench", max_retries=0, timeout=60)

    def flush(self) -> float:
        """Wait until the writer has written everything recorded; the seconds it took."""
        began = time.perf_counter()
        if not self.recorder.flush(timeout=180):
            print(f"WARNING: the request log did not drain within 180 s ({self.recorder.failures} write failures)")
        return time.perf_counter() - began


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


# -- 1. uncached chat ----------------------------------------------------------------------------


def uncached_chat(run: Run) -> None:
    args = run.args
    feature = run.feature("chat")
    raw = run.raw_sdk()
    backend = run.backends("chat")["file"]
    logged, unlogged = run.client(backend, log=True), run.client(backend, log=False)
    calls = {
        RAW: lambda: raw.chat.completions.create(model=MODEL, messages=MESSAGES),
        LOG_ON: lambda: logged.chat_completion(MESSAGES, MODEL, cache=False, feature=feature),
        LOG_OFF: lambda: unlogged.chat_completion(MESSAGES, MODEL, cache=False, feature=feature),
    }
    names = list(calls)
    for _ in range(args.warmup):  # connections, price table, tokenizer, the writer thread
        for name in names:
            calls[name]()
    run.made[feature] += args.warmup
    run.flush()

    samples = {name: Samples() for name in names}
    writer_started = writer_cpu()
    for _ in range(args.rounds):
        run.rng.shuffle(names)  # neither position in a round nor drift favours a client
        for name in names:
            samples[name].measure(calls[name])
    run.made[feature] += args.rounds
    run.flush()  # so that the writer's CPU below covers every record of the rounds
    writer_ms = (writer_cpu() - writer_started) / args.rounds * 1000
    for client in (logged, unlogged):
        client.close()
    raw.close()

    raw_med, raw_p99 = summary(samples[RAW].wall, 0.99)
    raw_cpu = samples[RAW].cpu_ms()
    rows = []
    for name in (RAW, LOG_ON, LOG_OFF):
        med, p99 = summary(samples[name].wall, 0.99)
        writer = writer_ms if name == LOG_ON else 0.0
        cpu = samples[name].cpu_ms() + writer
        target = mark = ""
        if name == LOG_ON:
            target = f"median <= {UNCACHED_MEDIAN_RATIO:.2f}x, CPU <= {UNCACHED_CPU_RATIO:.1f}x"
            mark = " / ".join(
                [
                    run.verdict(
                        "uncached chat, log on: median vs raw",
                        ratio(med, raw_med),
                        f"<= {UNCACHED_MEDIAN_RATIO:.2f}x",
                        med / raw_med <= UNCACHED_MEDIAN_RATIO,
                    ),
                    run.verdict(
                        "uncached chat, log on: CPU per call vs raw",
                        ratio(cpu, raw_cpu),
                        f"<= {UNCACHED_CPU_RATIO:.1f}x",
                        cpu / raw_cpu <= UNCACHED_CPU_RATIO,
                    ),
                ]
            )
        rows.append(
            [name, med, p99, cpu, writer, ratio(med, raw_med), ratio(p99, raw_p99), ratio(cpu, raw_cpu), target, mark]
        )
    print(
        f"1. Uncached chat (cache=False): {args.rounds} rounds after {args.warmup} warm-up rounds, each round "
        f"the three clients in a shuffled order\n"
    )
    headers = ["client", "median ms", "p99 ms", "CPU ms/call", "of which writer", "median", "p99", "CPU"]
    print(table([*headers, "target", ""], rows))
    print(
        "\n(CPU per call: the calling thread's CPU time, plus for the log on the writer thread's CPU time over the "
        "rounds divided by the records it wrote; ratios are to the raw SDK)"
    )


# -- 2. cache hits -------------------------------------------------------------------------------


def cache_hits(run: Run) -> None:
    rows: list[list[object]] = []
    for name, backend in run.backends("hit").items():
        rows += hit_rows(run, name, backend)
    print(f"\n2. Cache hits: {run.args.hit_calls} rounds per backend, each round the three calls in a shuffled order\n")
    print(table(["case", "median ms", "p99 ms", "median vs get", "target", ""], rows))
    if not run.redis_ok:
        print("\n(Redis not answering at 127.0.0.1:6379: the Redis backend was skipped)")


def hit_rows(run: Run, name: str, backend: BaseCache) -> list[list[object]]:
    args = run.args
    feature = run.feature(f"hit.{name}")
    logged, unlogged = run.client(backend, log=True), run.client(backend, log=False)
    logged.chat_completion(MESSAGES, MODEL, feature=feature)  # the miss that fills the cache
    assert logged.chat_completion(MESSAGES, MODEL, feature=feature).cached, f"{name}: the second call missed"
    run.made[feature] += 2
    key = logged._chat_cache_key(logged.providers["openai"], MODEL, MESSAGES, {})
    assert backend.get(key) is not None, f"{name}: nothing cached under the key this benchmark reads"
    get = f"{name}: backend.get (baseline)"
    on = f"{name}: hit, log on"
    off = f"{name}: hit, log off (reference)"
    calls = {
        get: lambda: backend.get(key),
        on: lambda: logged.chat_completion(MESSAGES, MODEL, feature=feature),
        off: lambda: unlogged.chat_completion(MESSAGES, MODEL, feature=feature),
    }
    names = list(calls)
    for _ in range(args.warmup):
        for case in names:
            calls[case]()
    samples = {case: Samples() for case in names}
    for _ in range(args.hit_calls):
        run.rng.shuffle(names)
        for case in names:
            samples[case].measure(calls[case])
    run.made[feature] += args.warmup + args.hit_calls
    for client in (logged, unlogged):
        client.close()

    get_med, _ = summary(samples[get].wall, 0.99)
    rows = []
    for case in (get, on, off):
        med, p99 = summary(samples[case].wall, 0.99)
        target = mark = ""
        if case == on:
            target = f"median <= {HIT_MEDIAN_MS} ms"
            mark = run.verdict(f"cache hit, log on, {name}: median", f"{med:.3f} ms", target, med <= HIT_MEDIAN_MS)
        rows.append([case, med, p99, ratio(med, get_med), target, mark])
    return rows


# -- 3. threads ----------------------------------------------------------------------------------


def threads(run: Run) -> None:
    args = run.args
    feature = run.feature("threads")
    raw = run.raw_sdk()
    logged = run.client(run.backends("threads")["file"], log=True)
    calls = {
        RAW: lambda: raw.chat.completions.create(model=MODEL, messages=MESSAGES),
        LOG_ON: lambda: logged.chat_completion(MESSAGES, MODEL, cache=False),
    }
    tags = {RAW: None, LOG_ON: feature}
    for name in calls:  # every thread's HTTP connection open, and its database connection (budgets)
        warm = run_phase(run.pool, args.threads, 0.3, calls[name], tags[name])
        if name == LOG_ON:
            run.made[feature] += warm.calls
    run.flush()

    # ABBA...: a load that drifts during the run weighs on both clients alike.
    order = [name for i in range(args.thread_phases) for name in ((RAW, LOG_ON) if i % 2 == 0 else (LOG_ON, RAW))]
    phases: dict[str, list[Phase]] = {RAW: [], LOG_ON: []}
    drains = []
    writer_started = writer_cpu()
    for name in order:
        phase = run_phase(run.pool, args.threads, args.thread_seconds, calls[name], tags[name])
        phases[name].append(phase)
        if name == LOG_ON:
            run.made[feature] += phase.calls
            # Untimed, and before the next phase: the writer's backlog must not run into the raw SDK's phase.
            drains.append(run.flush())
    writer = writer_cpu() - writer_started
    logged.close()
    raw.close()

    stats = {}
    for name, done in phases.items():
        count = sum(p.calls for p in done)
        med, p99 = summary([t for p in done for t in p.latencies], 0.99)
        cpu = sum(p.cpu for p in done) + (writer if name == LOG_ON else 0.0)
        stats[name] = (count, count / sum(p.elapsed for p in done), med, p99, cpu / count * 1000)
    raw_rate, raw_p99 = stats[RAW][1], stats[RAW][3]
    rows = []
    for name, (count, rate, med, p99, cpu) in stats.items():
        target = mark = ""
        if name == LOG_ON:
            target = f"calls/s >= {THREADS_THROUGHPUT_RATIO}x, p99 <= {THREADS_P99_RATIO}x"
            mark = " / ".join(
                [
                    run.verdict(
                        f"{args.threads} threads, log on: calls/s vs raw",
                        ratio(rate, raw_rate),
                        f">= {THREADS_THROUGHPUT_RATIO}x",
                        rate / raw_rate >= THREADS_THROUGHPUT_RATIO,
                    ),
                    run.verdict(
                        f"{args.threads} threads, log on: p99 vs raw",
                        ratio(p99, raw_p99),
                        f"<= {THREADS_P99_RATIO}x",
                        p99 / raw_p99 <= THREADS_P99_RATIO,
                    ),
                ]
            )
        rows.append(
            [name, count, f"{rate:.0f}", med, p99, cpu, ratio(rate, raw_rate), ratio(p99, raw_p99), target, mark]
        )
    print(
        f"\n3. {args.threads} threads, zero provider delay, cache=False: {args.thread_phases} phase(s) of "
        f"{args.thread_seconds:g} s per client in the order {', '.join('raw' if n == RAW else 'ours' for n in order)}\n"
    )
    headers = ["client", "calls", "calls/s", "median ms", "p99 ms", "CPU ms/call", "calls/s", "p99"]
    print(table([*headers, "target", ""], rows))
    print(
        f"\n(CPU per call: the calling threads' CPU time, plus for the log on the writer's; ratios are to the raw "
        f"SDK.) The writer used {writer * 1000 / max(1, stats[LOG_ON][0]):.3f} ms CPU per record and drained its "
        f"backlog in {max(drains):.2f} s at most after a phase (untimed)."
    )


# -- 4. coalescing -------------------------------------------------------------------------------


def coalescing(run: Run) -> None:
    args = run.args
    rows = []
    for name, backend in run.backends("coalesce").items():
        calls, provider_calls, elapsed = coalesce_once(run, name, backend)
        mark = run.verdict(
            f"{args.coalesce_threads} threads x {args.coalesce_calls} calls, {name}: provider calls",
            str(provider_calls),
            f"== {COALESCE_PROMPTS}",
            provider_calls == COALESCE_PROMPTS,
        )
        rows.append([name, calls, provider_calls, f"{calls / elapsed:.0f}", f"== {COALESCE_PROMPTS}", mark])
    print(
        f"\n4. Coalescing: {args.coalesce_threads} threads x {args.coalesce_calls} calls over {COALESCE_PROMPTS} "
        f"distinct prompts (cache on, log on), released together, each thread walking the prompts in the same order\n"
    )
    print(table(["backend", "calls", "provider calls (simulator)", "calls/s", "target", ""], rows))


def coalesce_once(run: Run, name: str, backend: BaseCache) -> tuple[int, int, float]:
    args = run.args
    feature = run.feature(f"coalesce.{name}")
    client = run.client(backend, log=True)
    # The run's tag in the prompt: entries of an earlier run can never answer.
    prompts = [[{"role": "user", "content": f"Prompt {i} of {run.tag}"}] for i in range(COALESCE_PROMPTS)]
    start = threading.Barrier(args.coalesce_threads)

    def worker() -> None:
        with llm_context(feature=feature):
            start.wait()
            for i in range(args.coalesce_calls):
                client.chat_completion(prompts[i % COALESCE_PROMPTS], MODEL)

    before = run.sim.count(CHAT)
    began = time.perf_counter()
    for future in [run.pool.submit(worker) for _ in range(args.coalesce_threads)]:
        future.result()
    elapsed = time.perf_counter() - began
    calls = args.coalesce_threads * args.coalesce_calls
    run.made[feature] += calls
    client.close()
    return calls, run.sim.count(CHAT) - before, elapsed


# -- 5. startup and imports ----------------------------------------------------------------------

OPENAI_IMPORT = "import time; t = time.perf_counter(); import openai; print(time.perf_counter() - t)"
PROJECT_STARTUP = (
    "import time; t = time.perf_counter(); import django; django.setup(); "
    "from apps.llm import LLMClient; LLMClient(); print(time.perf_counter() - t)"
)
# What a process has imported after django.setup(), LLMClient() (as users write it) and one chat
# call with the log on (a client pointed at the benchmark's simulator; its recorder spools to a
# temporary directory and writes to the scratch database).
IMPORT_PROBE = """
import json, shutil, sys, tempfile
from pathlib import Path
import django
django.setup()
seen = {"django.setup()": set(sys.modules)}
from apps.llm import LLMClient
LLMClient()
seen["LLMClient()"] = set(sys.modules)
from apps.llm.accounting.request_log import DatabaseRecorder
from apps.llm.cache import file_cache
tmp = Path(tempfile.mkdtemp())
recorder = DatabaseRecorder(tmp / "spool")
client = LLMClient(apikey_openai="sk-bench", openai_base_url=sys.argv[1], configure_from_env=False,
                   cache_backend=file_cache(tmp / "cache", ttl=60, max_entries=10), recorders=[recorder])
client.chat_completion([{"role": "user", "content": "Hi"}], "gpt-4o-mini", feature=sys.argv[2])
seen["one chat call"] = set(sys.modules)
recorder.close()
shutil.rmtree(tmp)
print(json.dumps({stage: sorted(modules) for stage, modules in seen.items()}))
"""


def python(code: str, *argv: str, flags: tuple[str, ...] = ()) -> tuple[str, str, float]:
    """Run ``code`` in a fresh interpreter at the repository root: (last output line, stderr, wall seconds)."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, env=os.environ.copy()
    )
    wall = time.perf_counter() - began
    if done.returncode:
        raise RuntimeError(f"subprocess failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1], done.stderr, wall


def startup(run: Run) -> None:
    # The subprocesses inherit DATABASE_URL (the scratch database) and DJANGO_ENV from this process.
    cases = {"import openai": OPENAI_IMPORT, "django.setup() + LLMClient()": PROJECT_STARTUP}
    inside: dict[str, list[float]] = {name: [] for name in cases}
    whole: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for _ in range(run.args.startup_runs):
        run.rng.shuffle(names)
        for name in names:
            seconds, _, wall = python(cases[name])
            inside[name].append(float(seconds) * 1000)
            whole[name].append(wall * 1000)
    base_inside, base_whole = statistics.median(inside["import openai"]), statistics.median(whole["import openai"])
    rows = [
        [
            name,
            statistics.median(inside[name]),
            statistics.median(whole[name]),
            ratio(statistics.median(inside[name]), base_inside),
        ]
        for name in cases
    ]
    print(f"\n5. Startup: median of {run.args.startup_runs} fresh subprocess(es) per case, interleaved\n")
    print(table(["case", "in process ms", "whole process ms", "in process vs import openai"], rows))
    print(f"(whole process: with the interpreter's own start and exit, ~{base_whole - base_inside:.0f} ms)")
    heavy_imports(run)


def heavy_imports(run: Run) -> None:
    feature = run.feature("imports")
    output, importtime, _ = python(IMPORT_PROBE, run.sim.base_url, feature, flags=("-X", "importtime"))
    run.made[feature] += 1
    stages = {stage: set(modules) for stage, modules in json.loads(output).items()}
    imports = parse_importtime(importtime)
    rows, imported, by_dependencies = [], [], []
    for module in HEAVY_MODULES:
        stage = next((stage for stage, modules in stages.items() if module in modules), None)
        if stage is None:
            rows.append([module, "not imported", "", ""])
            continue
        chain = import_chain(imports, module)
        # Imported by this project's code, or by a dependency's own imports (django-cfg's, at setup)?
        (by_dependencies if len(chain) > 1 and chain[-2] not in PROJECT_PACKAGES else imported).append(module)
        own_ms = sum(us for name, us, _ in imports if name == module or name.startswith(module + ".")) / 1000
        rows.append([module, stage, " > ".join(chain), f"{own_ms:.0f}"])
    counts = ", ".join(f"{stage}: {len(modules)}" for stage, modules in stages.items())
    print(
        f"\nHeavy modules in sys.modules after LLMClient() + one chat call (log on), in a fresh process; "
        f"modules loaded after {counts}\n"
    )
    print(
        table(["module", "first there after", "imported through (top-level packages)", "own modules' import ms"], rows)
    )
    print("(import chain and times from -X importtime, which slows imports a little)")
    before_call, after_call = list(stages.values())[-2:]
    added = Counter(name.split(".")[0] for name in after_call - before_call)
    print(
        "Modules the first chat call imports, by top-level package: "
        + ", ".join(f"{package} {count}" for package, count in added.most_common(12))
    )
    mark = run.verdict(
        "heavy modules this project imports for a chat call",
        ", ".join(imported) or "none",
        "none (lazy imports)",
        not imported,
    )
    print(f"\nTarget: none of them imported by this project's code for a chat call: {mark}")
    if by_dependencies:
        print(f"Imported by dependencies' own package imports (not this project's code): {', '.join(by_dependencies)}")


def parse_importtime(stderr: str) -> list[tuple[str, int, int]]:
    """(module, self microseconds, nesting depth) per line of ``-X importtime``, in its order (children first)."""
    found = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|", 2)
        found.append((name.strip(), int(own), len(name) - len(name.lstrip())))
    return found


def import_chain(imports: list[tuple[str, int, int]], module: str) -> list[str]:
    """The top-level packages through which ``module`` was first imported, outermost first."""
    index = next(i for i, (name, _, _) in enumerate(imports) if name == module or name.startswith(module + "."))
    chain, depth = [module], imports[index][2]
    for name, _, level in imports[index + 1 :]:  # a parent is listed after its children, less indented
        if level < depth:
            depth = level
            top = name.split(".")[0]
            if top != chain[-1]:
                chain.append(top)
    return chain[::-1]


# -- the log, and the profile --------------------------------------------------------------------


def check_log(run: Run) -> None:
    run.flush()
    rows = []
    for feature, calls in sorted(run.made.items()):
        logged = LLMRequest.objects.filter(feature=feature).count()
        rolled = LLMUsageDaily.objects.filter(feature=feature).aggregate(n=Sum("requests"))["n"] or 0
        once = logged == calls == rolled
        if feature == run.feature("threads"):
            run.verdict(
                f"{run.args.threads} threads: every call in the log exactly once",
                f"{logged} rows / {calls} calls",
                "equal",
                once,
            )
        rows.append([feature.removeprefix(run.tag + "."), calls, logged, rolled, "yes" if once else "NO"])
    tagged = LLMRequest.objects.filter(feature__startswith=run.tag).count()
    print(f"\nThe request log after a flush (scratch database, tag {run.tag}.*)\n")
    print(table(["tag", "logged calls made", "LLMRequest rows", "LLMUsageDaily requests", "exactly once"], rows))
    print(
        f"All rows with the run's tag: {tagged}, calls made with it: {sum(run.made.values())} "
        f"(the log-off client and the raw SDK add none); writer failures: {run.recorder.failures}"
    )


# -- the profile (optional) ---------------------------------------------------------------------

#: Records per transaction when the writer's half is profiled.
PROFILE_BATCH = 50
STDLIB = Path(sysconfig.get_paths()["stdlib"])


class KeptRecords:
    """A recorder that keeps what it receives: the writer's half is profiled on these records."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def record(self, call: Any) -> None:
        self.records.append(call)


@contextmanager
def simulator_process() -> Iterator[str]:
    """The simulator in a process of its own (so its server threads stay out of a profile); its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "apps.llm.testing.simulator", "--port", "0", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split()[2]  # "OpenAI simulator: http://127.0.0.1:PORT/v1 (...)"
    finally:
        process.terminate()
        process.wait(timeout=10)


def profile(args: argparse.Namespace, tag: str) -> None:
    """cProfile of the caller's side of N logged calls, then of the writer's side of their records.

    Python 3.12's cProfile sees every thread of the process through one call stack, so it is only
    sound while one thread runs Python code: this runs after the other sections (their simulator,
    pool and writer are gone), against a simulator in another process, with the recorder's writer
    thread held back while the calls are profiled (the records wait in its spool and queue). The
    writer's work is then profiled in this thread on the same records, with the function the writer
    thread calls, in batches of PROFILE_BATCH; the held writer writes them again at the end, which
    must add no row (the log is idempotent by record id). The clock is the wall clock: django-cfg's
    idle background threads (its Telegram queue, a scheduler pool) still wake now and then, and a
    per-thread CPU clock read in two threads makes nonsense of the profile, where a shared wall
    clock only misplaces their few microseconds.
    """
    calls, feature = args.profile, f"{tag}.profile"
    with tempfile.TemporaryDirectory() as tmp, simulator_process() as base_url:
        # The writer thread lingers (asleep) until close() wakes it: held back while calls are profiled.
        recorder = DatabaseRecorder(
            Path(tmp), store_text=args.store_text, text_limit=settings.LLM["TEXT_LIMIT"], linger=3600
        )
        kept = KeptRecords()
        client = LLMClient(
            apikey_openai="sk-bench",
            openai_base_url=base_url,
            configure_from_env=False,
            cache_backend=file_cache(Path(tmp) / "cache", ttl=3600, max_entries=1000),
            recorders=[recorder, kept],
        )
        for _ in range(50):
            client.chat_completion(MESSAGES, MODEL, cache=False, feature=feature)
        caller = cProfile.Profile()
        caller.enable()
        for _ in range(calls):
            client.chat_completion(MESSAGES, MODEL, cache=False, feature=feature)
        caller.disable()
        client.close()

        writer = cProfile.Profile()
        records = kept.records
        writer.enable()
        for start in range(0, len(records), PROFILE_BATCH):
            request_log.write_records(
                records[start : start + PROFILE_BATCH], store_text=args.store_text, text_limit=recorder.text_limit
            )
        writer.disable()
        recorder.close()  # the writer writes them again: everything is there already
        logged = LLMRequest.objects.filter(feature=feature).count()

    print(
        f"\nProfile (cProfile, wall clock) of {calls} LLMClient calls (cache=False, log on), the caller's thread "
        f"alone; the simulator in another process (reading its answers is the socket reads' time)\n"
    )
    print_profile(caller, calls, "per call")
    print(
        f"\nProfile of the writer's work on the same {len(records)} records, in batches of {PROFILE_BATCH} "
        f"(psycopg's time includes waiting for PostgreSQL)\n"
    )
    print_profile(writer, len(records), "per record")
    print(f"\nRows with the profile's tag: {logged} for {len(records)} calls (the held writer added none)")


def print_profile(profiler: cProfile.Profile, per: int, unit: str) -> None:
    # pstats keeps (filename, line, function) -> (primitive calls, calls, tottime, cumtime, callers).
    entries: dict[tuple[str, int, str], tuple] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values())
    by_package: Counter[str] = Counter()
    for (filename, _, function), (_, _, tt, _, _) in entries.items():
        by_package[package_of(filename, function)] += tt
    print(f"Profiled time: {total / per * 1e6:.0f} us {unit}\n")
    print(
        table(
            ["where (own time)", "share", f"us {unit}"],
            [[name, f"{tt / total:.0%}", tt / per * 1e6] for name, tt in by_package.most_common(10)],
        )
    )
    headers = ["function", f"calls {unit}", "tottime us", "cumtime us"]
    everything = sorted(entries.items(), key=lambda item: -item[1][2])
    print(f"\nTop 10 functions of all code by own time ({unit})\n")
    print(table(headers, profile_rows(everything[:10], per)))
    apps = str(ROOT / "apps")
    print(f"\nTop 15 functions of apps/ by own time ({unit})\n")
    print(table(headers, profile_rows([item for item in everything if item[0][0].startswith(apps)][:15], per)))


def profile_rows(items: list[tuple[tuple[str, int, str], tuple]], per: int) -> list[list[object]]:
    rows = []
    for (filename, line, function), (_, ncalls, tt, ct, _) in items:
        where = Path(filename)
        if where.is_relative_to(ROOT / "apps"):
            where = where.relative_to(ROOT)
        elif "site-packages" in filename:
            where = Path(filename.split("site-packages/", 1)[1])
        elif where.is_relative_to(STDLIB):
            where = where.relative_to(STDLIB)
        name = f"{where}:{line}({function})" if filename != "~" else function
        rows.append([name, ncalls / per, tt / per * 1e6, ct / per * 1e6])
    return rows


def package_of(filename: str, function: str) -> str:
    """Where profiled code lives: apps/, a site-packages distribution, or the standard library and builtins."""
    if "_socket.socket" in function and "recv" in function:
        return "socket reads (waiting for answers)"
    if filename.startswith(str(ROOT / "apps")):
        return "apps (this project)"
    if "site-packages" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    return "stdlib / builtins"


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    args = ARGS
    # As in production: Django keeps no per-connection list of queries.
    settings.DEBUG = False
    run_id = uuid.uuid4().hex[:10]
    redis_ok = redis_answers()
    print(
        f"bench_client: Python {platform.python_version()}, openai {openai.__version__}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at start; scratch database {args.db!r}; async DatabaseRecorder, "
        f"store_text={args.store_text}; loopback simulator, zero delay; Redis "
        f"{'at 127.0.0.1:6379' if redis_ok else 'absent'}; shuffle seed {args.seed}\n"
    )
    began = time.perf_counter()
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            OpenAISimulator(keep_requests=0) as sim,  # counters only: a request list would grow all run
            ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="bench") as pool,
        ):
            recorder = DatabaseRecorder(
                Path(tmp) / "spool", store_text=args.store_text, text_limit=settings.LLM["TEXT_LIMIT"]
            )
            run = Run(
                args, sim, recorder, Path(tmp), pool, f"bench.client.{run_id}", random.Random(args.seed), redis_ok
            )
            try:
                uncached_chat(run)
                cache_hits(run)
                threads(run)
                coalescing(run)
                startup(run)
                check_log(run)
            finally:
                recorder.close()
                if redis_ok:
                    drop_redis_keys(run.tag)
        if args.profile:
            profile(args, run.tag)
        print(
            f"\nIssue 13's targets (today's code; the marks gate nothing), run of {time.perf_counter() - began:.0f} s\n"
        )
        print(table(["target", "measured", "wanted", ""], run.verdicts))
    finally:
        drop_database(MAINTENANCE_URL, args.db)


def redis_answers() -> bool:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.RedisError:
        return False
    return True


def drop_redis_keys(tag: str) -> None:
    """Remove this run's cache entries (Django's Redis keys start with the KEY_PREFIX)."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{tag}.*"))
    if keys:
        client.delete(*keys)


if __name__ == "__main__":
    main()
