"""`usage_stats()` from the daily rollups vs the same figures aggregated from the raw request log.

Everything runs in a scratch database on the same PostgreSQL server (default `bench_usage_stats`,
created, migrated, and dropped at the end unless `--keep`), so the developer's data is never
touched. The script:

1. seeds `LLMRequest` with PostgreSQL COPY (psycopg 3 `cursor.copy()`): the last 90 days with a
   weekday/office-hours pattern, 15 real models from the ModelPrice table across 3 providers
   (openai, openrouter, and an OpenAI-compatible server whose models have no price: cost NULL),
   ~200 users with Zipf-like activity (plus ~5% calls without a user), 10 features each with its
   own models and token sizes, 3% errors, 20% cache hits; costs are the exact products of the
   token counts and the model's prices (a sample is re-checked with `apps.llm.costs.calculate_cost`);
2. builds `LLMUsageDaily` from the raw table with one `INSERT ... SELECT ... GROUP BY` (the same
   arithmetic as `rollups.deltas`), the coarser rollups from it (`rollups.rebuild_coarse`), and
   asserts that every rollup total equals the raw total;
3. times, interleaved, `usage_stats(days=30)` and filtered variants (user=, feature=, model=)
   against the same figures aggregated from the raw table over the same window, asserting that
   both give identical `UsageStats`; and prints the EXPLAIN of a raw and a rollup query.

    .venv/bin/python bench/bench_usage_stats.py                       # 1M rows
    .venv/bin/python bench/bench_usage_stats.py --rows 10000000 --keep
    .venv/bin/python bench/bench_usage_stats.py --steps 1000000,3000000,10000000
    .venv/bin/python bench/bench_usage_stats.py --rows 10000000 --reuse   # a kept database
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_ENV", "development")

import itertools

from _setup import percentile, table

DAYS = 90
CHUNK = 250_000
ERROR_RATE = 0.03
CACHE_HIT_RATE = 0.20
NULL_USER_SHARE = 0.05

# (provider, model id, cache reads supported, reasoning model). Compatible models have no price.
MODELS = [
    ("openai", "gpt-4o-mini", True, False),
    ("openai", "gpt-4.1-mini", True, False),
    ("openai", "gpt-4.1-nano", True, False),
    ("openai", "gpt-5-mini", True, True),
    ("openai", "o4-mini", True, True),
    ("openai", "text-embedding-3-small", False, False),
    ("openrouter", "anthropic/claude-sonnet-4.5", True, False),
    ("openrouter", "anthropic/claude-haiku-4.5", True, False),
    ("openrouter", "google/gemini-2.5-flash", True, True),
    ("openrouter", "deepseek/deepseek-chat-v3.1", True, False),
    ("openrouter", "meta-llama/llama-3.3-70b-instruct", False, False),
    ("openrouter", "mistralai/mistral-small-3.2-24b-instruct", False, False),
    ("compatible", "meta-llama/llama-3.1-8b-instruct", False, False),
    ("compatible", "qwen/qwen-2.5-7b-instruct", False, False),
    ("compatible", "mistralai/mistral-nemo", False, False),
]
# feature: (share of traffic, {model: weight}, median prompt tokens, median visible completion tokens)
FEATURES = {
    "chat.assistant": (
        0.24,
        {"gpt-4o-mini": 4, "gpt-4.1-mini": 2.5, "anthropic/claude-sonnet-4.5": 2, "google/gemini-2.5-flash": 1.5},
        1500,
        250,
    ),
    "support.reply": (
        0.14,
        {"anthropic/claude-haiku-4.5": 5, "gpt-4.1-mini": 3, "deepseek/deepseek-chat-v3.1": 2},
        2500,
        200,
    ),
    "docs.summarize": (
        0.10,
        {"google/gemini-2.5-flash": 5, "gpt-4.1-nano": 3, "meta-llama/llama-3.3-70b-instruct": 2},
        6000,
        300,
    ),
    "search.embed": (0.16, {"text-embedding-3-small": 1}, 400, 0),
    "extract.invoice": (0.08, {"gpt-4o-mini": 6, "mistralai/mistral-small-3.2-24b-instruct": 4}, 1800, 150),
    "code.review": (0.05, {"anthropic/claude-sonnet-4.5": 5, "gpt-5-mini": 3, "o4-mini": 2}, 8000, 600),
    "translate": (
        0.07,
        {"deepseek/deepseek-chat-v3.1": 4, "gpt-4.1-mini": 3, "qwen/qwen-2.5-7b-instruct": 3},
        700,
        700,
    ),
    "classify.ticket": (0.08, {"gpt-4.1-nano": 5, "meta-llama/llama-3.1-8b-instruct": 5}, 500, 10),
    "moderation.precheck": (0.05, {"mistralai/mistral-nemo": 7, "gpt-4.1-nano": 3}, 300, 5),
    "agent.plan": (0.03, {"o4-mini": 4, "gpt-5-mini": 3, "google/gemini-2.5-flash": 3}, 4000, 800),
}
# Calls without a user: background jobs.
BACKGROUND_FEATURES = {"search.embed": 5, "docs.summarize": 3, "moderation.precheck": 2}
ERRORS = [  # (type, share, typical latency ms, message)
    ("RateLimitError", 0.45, 250, "Rate limit reached for requests. Please try again in 20ms."),
    ("LLMTimeoutError", 0.20, 60_000, "Request timed out."),
    ("ServerError", 0.20, 2_000, "The server had an error while processing your request. Sorry about that!"),
    ("ProviderConnectionError", 0.10, 30, "Connection error."),
    ("ContextLengthExceeded", 0.05, 120, "This model's maximum context length is 128000 tokens."),
]
LATENCY_BASE_MS = {"openai": 350.0, "openrouter": 600.0, "compatible": 120.0}
MS_PER_TOKEN = {"openai": 9.0, "openrouter": 12.0, "compatible": 25.0}
MAX_PROMPT = 120_000
COPY_COLUMNS = [
    "id",
    "created_at",
    "endpoint",
    "provider",
    "model_requested",
    "model",
    "status",
    "error_type",
    "error_message",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost",
    "provider_cost",
    "saved_cost",
    "price_id",
    "cached",
    "latency_ms",
    "time_to_first_token_ms",
    "attempts",
    "cache_key",
    "user_id",
    "feature",
    "key_fingerprint",
    "request_id",
]
NULL = "\\N"


# -- the scratch database (before Django starts, so that "default" points at it) ----------------


def scratch_database(name: str, reuse: bool) -> tuple[str, str]:
    """(maintenance URL, scratch URL): the project's server, with ``name`` created on it."""
    from config.database import database_url
    from config.env import load_env

    base = database_url(load_env())  # starts the embedded server if needed
    parts = urlsplit(base)
    if parts.path.lstrip("/") == name or not name.startswith("bench_"):
        sys.exit(
            f"--db {name}: the scratch database is dropped and recreated, so its name must start with "
            f"'bench_' and not be the project's own database"
        )
    scratch = urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and not reuse:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if not exists or not reuse:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["DATABASE_URL"] = scratch
    load_env.cache_clear()
    return base, scratch


@contextmanager
def scratch_session(name: str, *, reuse: bool, keep: bool) -> Iterator[None]:
    """Django on the scratch database ``name`` (migrated) for the block; dropped after it unless ``keep``."""
    base = open_scratch_database(name, reuse)
    try:
        yield
    finally:
        if keep:
            print(f"\nKept the scratch database {name!r}: rerun with --reuse to measure it again")
        else:
            drop_database(base, name)
            print(f"\nDropped the scratch database {name!r} (--keep keeps it, --reuse reuses it)")


def open_scratch_database(name: str, reuse: bool) -> str:
    """``scratch_database``, then Django on it (migrated); returns the maintenance URL."""
    base, _ = scratch_database(name, reuse)
    from _setup import setup_django

    setup_django()  # migrates the scratch database
    try:  # django-cfg's monitor logs every query over 2 s: the raw path at 10M rows
        from django_cfg.modules.django_monitor.capture import slow_query

        slow_query._SLOW_QUERY_THRESHOLD_MS = float("inf")
    except ImportError:
        pass
    from django.db import connection

    assert connection.settings_dict["NAME"] == name, "not connected to the scratch database"
    return base


def drop_database(base: str, name: str) -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- seeding ------------------------------------------------------------------------------------


class Catalog:
    """The models with their prices as integers at one scale, users, features and their mix."""

    def __init__(self, seed: int):
        from apps.llm.models import ModelPrice

        rows = {
            (p.provider, p.model_id): p
            for p in ModelPrice.objects.current().filter(model_id__in=[m for _, m, _, _ in MODELS])
        }
        self.models = []
        for provider, model_id, cache_reads, reasoning in MODELS:
            price_row = rows.get((provider, model_id))
            if provider != "compatible" and price_row is None:
                sys.exit(f"ModelPrice has no current price for {provider}:{model_id}")
            if provider == "compatible" and (("openrouter", model_id) not in rows):
                sys.exit(f"{model_id} is not a model id of the ModelPrice table")
            self.models.append((provider, model_id, cache_reads, reasoning, price_row))
        priced = [m[4] for m in self.models if m[4] is not None]
        components = ("prompt", "completion", "input_cache_read", "internal_reasoning", "request")
        self.places = max(-min(getattr(r, c).normalize().as_tuple().exponent, 0) for r in priced for c in components)
        scale = 10**self.places

        def as_int(value: Decimal) -> int:
            scaled = value * scale
            assert scaled == scaled.to_integral_value()
            return int(scaled)

        n = len(self.models)
        self.provider = np.array([m[0] for m in self.models], dtype=object)
        self.name = np.array([m[1] for m in self.models], dtype=object)
        self.cache_reads = np.array([m[2] for m in self.models])
        self.reasoning = np.array([m[3] for m in self.models])
        self.priced = np.array([m[4] is not None for m in self.models])
        self.price_id = np.array([m[4].pk if m[4] is not None else 0 for m in self.models], dtype=np.int64)
        self.p_prompt, self.p_cache_read, self.p_completion, self.p_reasoning, self.p_request = (
            np.zeros(n, dtype=np.int64) for _ in range(5)
        )
        self.prompt_cap = np.full(n, MAX_PROMPT, dtype=np.int64)
        for i, (_, _, _, _, row) in enumerate(self.models):
            if row is None:
                continue
            self.p_prompt[i] = as_int(row.prompt)
            self.p_completion[i] = as_int(row.completion)
            # calculate_cost: a component without its own price costs the base one.
            self.p_cache_read[i] = as_int(row.input_cache_read or row.prompt)
            self.p_reasoning[i] = as_int(row.internal_reasoning or row.completion)
            self.p_request[i] = as_int(row.request)
            tiers = [t.get("min_prompt_tokens") for t in (row.tiers or []) if t.get("min_prompt_tokens")]
            if tiers:  # stay in the base tier: the integer arithmetic below knows one sheet per model
                self.prompt_cap[i] = min(MAX_PROMPT, min(int(t) for t in tiers) - 1)
        assert (
            int(self.prompt_cap.max())
            * int(max(self.p_prompt.max(), self.p_completion.max(), self.p_reasoning.max()))
            * 4
            < 2**62
        ), "int64 overflow"

        index = {m[1]: i for i, m in enumerate(self.models)}
        self.features = list(FEATURES)
        rng = np.random.default_rng(seed)
        # ~200 users, Zipf-like activity; each uses 1-4 features, with its own mix.
        users = np.arange(1001, 1201)
        activity = 1.0 / np.arange(1, len(users) + 1) ** 0.9
        rng.shuffle(activity)
        shares = np.array([FEATURES[f][0] for f in self.features])
        triples: dict[tuple[int, int, int], float] = {}

        def add(user: int, feature_mix: dict[int, float], weight: float) -> None:
            total = sum(feature_mix.values())
            for f, w in feature_mix.items():
                mix = FEATURES[self.features[f]][1]
                mix_total = sum(mix.values())
                for model, mw in mix.items():
                    key = (user, f, index[model])
                    triples[key] = triples.get(key, 0) + weight * w / total * mw / mix_total

        for user, act in zip(users, activity):
            k = rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.25, 0.1])
            chosen = rng.choice(len(self.features), size=k, replace=False, p=shares / shares.sum())
            add(
                int(user),
                {int(f): shares[f] * rng.uniform(0.5, 1.5) for f in chosen},
                (1 - NULL_USER_SHARE) * act / activity.sum(),
            )
        add(0, {self.features.index(f): w for f, w in BACKGROUND_FEATURES.items()}, NULL_USER_SHARE)
        keys = list(triples)
        self.t_user = np.array([k[0] for k in keys], dtype=np.int64)
        self.t_feature = np.array([k[1] for k in keys], dtype=np.int64)
        self.t_model = np.array([k[2] for k in keys], dtype=np.int64)
        weights = np.array([triples[k] for k in keys])
        self.t_p = weights / weights.sum()
        self.user_activity = {int(u): float(a) for u, a in zip(users, activity)}
        self.feature_prompt = np.array([FEATURES[f][2] for f in self.features], dtype=float)
        self.feature_completion = np.array([FEATURES[f][3] for f in self.features], dtype=float)
        self.fingerprints = {"openai": "3f9a1c0b7d2e", "openrouter": "b41d6e0a9c53", "compatible": ""}


def hour_weights(start: datetime, hours: int) -> np.ndarray:
    """Relative traffic per hour: office hours, quieter weekends, +50% growth over the period."""
    w = np.empty(hours)
    for h in range(hours):
        t = start + timedelta(hours=h)
        diurnal = 0.25 + np.exp(-((t.hour - 13.5) ** 2) / 18.0)
        weekly = 0.45 if t.weekday() >= 5 else 1.0
        w[h] = diurnal * weekly * (1.0 + 0.5 * h / hours)
    return w / w.sum()


def hex_strings(rng: np.random.Generator, n: int, width: int) -> list[str]:
    h = rng.bytes(n * width // 2).hex()
    return [h[i : i + width] for i in range(0, n * width, width)]


def as_text(values: np.ndarray, mask: np.ndarray | None = None) -> list[str]:
    """COPY text of an int/float array; NULL where ``mask`` is False."""
    out = np.array(list(map(str, values.tolist())), dtype=object)
    if mask is not None:
        out[~mask] = NULL
    return out.tolist()


def chunk_rows(cat: Catalog, rng: np.random.Generator, ts_us: np.ndarray) -> bytes:
    """One COPY text block of len(ts_us) requests, created at ``ts_us`` (µs since the epoch, UTC)."""
    n = len(ts_us)
    t = rng.choice(len(cat.t_p), size=n, p=cat.t_p)
    user, feature, model = cat.t_user[t], cat.t_feature[t], cat.t_model[t]
    provider = cat.provider[model]
    is_error = rng.random(n) < ERROR_RATE
    is_hit = ~is_error & (rng.random(n) < CACHE_HIT_RATE / (1 - ERROR_RATE))
    ok = ~is_error
    fresh = ok & ~is_hit  # a call that reached the provider and was billed
    embed = cat.features.index("search.embed")
    is_embed = feature == embed

    prompt = np.exp(np.log(cat.feature_prompt[feature]) + rng.normal(0, 0.8, n)).astype(np.int64)
    prompt = np.clip(prompt, 5, cat.prompt_cap[model])
    visible = np.exp(np.log(np.maximum(cat.feature_completion[feature], 1)) + rng.normal(0, 0.7, n)).astype(np.int64)
    visible = np.where(is_embed, 0, np.clip(visible, 1, 16_000))
    reasoning = np.where(
        cat.reasoning[model] & ~is_embed,
        np.exp(np.log(600) + rng.normal(0, 0.9, n)).astype(np.int64).clip(0, 30_000),
        0,
    )
    cache_read = cat.cache_reads[model] & (prompt >= 1024) & (rng.random(n) < 0.35)
    cached_tokens = np.where(cache_read, (prompt * rng.uniform(0.3, 0.95, n)).astype(np.int64) // 128 * 128, 0)
    # Failures spent nothing; a full cache hit of embeddings reports no usage at all.
    spent = ok & ~(is_hit & is_embed)
    prompt, visible, reasoning, cached_tokens = (
        np.where(spent, a, 0) for a in (prompt, visible, reasoning, cached_tokens)
    )
    completion = visible + reasoning
    total = prompt + completion
    cost_int = (
        (prompt - cached_tokens) * cat.p_prompt[model]
        + cached_tokens * cat.p_cache_read[model]
        + visible * cat.p_completion[model]
        + reasoning * cat.p_reasoning[model]
        + cat.p_request[model]
    )
    priced = cat.priced[model]
    cost_text = np.array([f"{c}e-{cat.places}" for c in cost_int.tolist()], dtype=object)

    cost = np.full(n, NULL, dtype=object)
    cost[fresh & priced] = cost_text[fresh & priced]
    cost[is_hit] = "0"  # a hit costs nothing; what it would have cost is saved_cost
    saved = np.full(n, NULL, dtype=object)
    saved[is_hit & priced & ~is_embed] = cost_text[is_hit & priced & ~is_embed]
    provider_cost = np.full(n, NULL, dtype=object)
    reported = fresh & (provider == "openrouter")
    provider_cost[reported] = cost_text[reported]

    endpoint = np.where(is_embed, "embeddings", np.where(rng.random(n) < 0.2, "chat.stream", "chat")).astype(object)
    noise = np.exp(rng.normal(0, 0.45, n))
    base = np.array([LATENCY_BASE_MS[p] for p in provider.tolist()])
    per_token = np.array([MS_PER_TOKEN[p] for p in provider.tolist()])
    latency = base * noise + (visible + 0.6 * reasoning) * per_token * noise
    latency = np.where(is_hit, np.exp(np.log(1.5) + rng.normal(0, 0.6, n)), latency)
    error_kind = rng.choice(len(ERRORS), size=n, p=[e[1] for e in ERRORS])
    error_latency = np.array([e[2] for e in ERRORS], dtype=float)[error_kind] * np.exp(rng.normal(0, 0.3, n))
    latency = np.round(np.where(is_error, error_latency, latency), 3)
    stream_ttft = fresh & (endpoint == "chat.stream")
    ttft = np.round(base * noise * 0.8, 3)
    attempts = np.where(is_hit, 0, 1 + (rng.random(n) < 0.05) + (rng.random(n) < 0.01))
    attempts = np.where(is_error, rng.integers(1, 4, n), attempts)

    status = np.where(is_error, "error", "success").astype(object)
    error_type = np.full(n, "", dtype=object)
    error_message = np.full(n, "", dtype=object)
    error_type[is_error] = np.array([e[0] for e in ERRORS], dtype=object)[error_kind[is_error]]
    error_message[is_error] = np.array([e[3] for e in ERRORS], dtype=object)[error_kind[is_error]]
    price_id = as_text(cat.price_id[model], ok & priced)
    keys = np.array(["llm:v1:" + h for h in hex_strings(rng, n, 64)], dtype=object)
    keys[is_embed] = ""
    request_id = np.array(["chatcmpl-" + h for h in hex_strings(rng, n, 24)], dtype=object)
    request_id[is_embed | is_error] = ""
    names = cat.name[model].tolist()
    columns = [
        hex_strings(rng, n, 32),
        np.strings.add(ts_us.astype("datetime64[us]").astype(str), "+00").tolist(),
        endpoint.tolist(),
        provider.tolist(),
        names,
        names,
        status.tolist(),
        error_type.tolist(),
        error_message.tolist(),
        as_text(prompt),
        as_text(completion),
        as_text(cached_tokens),
        ["0"] * n,
        as_text(reasoning),
        as_text(total),
        cost.tolist(),
        provider_cost.tolist(),
        saved.tolist(),
        price_id,
        np.where(is_hit, "t", "f").tolist(),
        as_text(latency),
        as_text(ttft, stream_ttft),
        as_text(attempts),
        keys.tolist(),
        as_text(user, user != 0),
        np.array(cat.features, dtype=object)[feature].tolist(),
        [cat.fingerprints[p] for p in provider.tolist()],
        request_id.tolist(),
    ]
    assert len(columns) == len(COPY_COLUMNS)
    return ("\n".join(map("\t".join, zip(*columns))) + "\n").encode()


def seed(cat: Catalog, count: int, seed_value: int) -> float:
    """Append ``count`` requests over the last DAYS days with COPY; returns the seconds it took."""
    from django.db import connection

    rng = np.random.default_rng(seed_value)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = datetime.combine(now.date() - timedelta(days=DAYS - 1), datetime.min.time(), tzinfo=UTC)
    hours = int((now - start).total_seconds() // 3600)
    slot = np.sort(rng.choice(hours, size=count, p=hour_weights(start, hours)))
    ts = int(start.timestamp() * 1_000_000) + slot * 3_600_000_000 + rng.integers(0, 3_600_000_000, count)
    ts.sort()  # the log is appended in time order
    copy_sql = f"COPY llm_llmrequest ({', '.join(COPY_COLUMNS)}) FROM STDIN"
    started = time.perf_counter()
    connection.ensure_connection()
    pg: psycopg.Connection = connection.cursor().connection
    for offset in range(0, count, CHUNK):
        block = chunk_rows(cat, rng, ts[offset : offset + CHUNK])
        with pg.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.write(block)
        done = min(count, offset + CHUNK)
        elapsed = time.perf_counter() - started
        print(f"\r  seeded {done:,}/{count:,} rows, {done / elapsed:,.0f} rows/s", end="", flush=True)
    print()
    return time.perf_counter() - started


# -- rollups --------------------------------------------------------------------------------------


def rollup_select() -> str:
    """The raw table grouped exactly as rollups.deltas groups records."""
    from apps.llm.models import LATENCY_BUCKETS_MS

    bounds = [None, *LATENCY_BUCKETS_MS, None]
    buckets = []
    for low, high in itertools.pairwise(bounds):
        cond = " AND ".join(
            c
            for c in (
                f"latency_ms > {low}" if low is not None else "",
                f"latency_ms <= {high}" if high is not None else "",
            )
            if c
        )
        buckets.append(f"count(*) FILTER (WHERE {cond})")
    tokens = ", ".join(
        f"coalesce(sum({c}) FILTER (WHERE NOT cached), 0)"
        for c in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "total_tokens")
    )
    return f"""
        SELECT (created_at AT TIME ZONE 'UTC')::date, provider, coalesce(nullif(model, ''), model_requested),
               user_id, feature,
               count(*), count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE status = 'error'),
               count(*) FILTER (WHERE cached), {tokens},
               coalesce(sum(cost), 0), coalesce(sum(provider_cost), 0), coalesce(sum(saved_cost), 0),
               sum(round(latency_ms)::bigint), {", ".join(COMPLETENESS.values())}, ARRAY[{", ".join(buckets)}]::bigint[]
        FROM llm_llmrequest GROUP BY 1, 2, 3, 4, 5"""


#: The rollups' completeness counters, from the raw log (in the rollups' column order).
COMPLETENESS = {
    "refusals": "count(*) FILTER (WHERE status = 'refused')",
    "unpriced": "count(*) FILTER (WHERE status = 'success' AND cost IS NULL)",
    "estimated": "count(*) FILTER (WHERE usage_estimated OR price_estimated)",
    "reported_calls": "count(*) FILTER (WHERE cost IS NOT NULL AND provider_cost IS NOT NULL)",
    "reported_cost": "coalesce(sum(cost) FILTER (WHERE provider_cost IS NOT NULL), 0)",
    "reported_provider_cost": "coalesce(sum(provider_cost) FILTER (WHERE cost IS NOT NULL), 0)",
}


def build_rollups() -> float:
    from django.db import connection

    from apps.llm.accounting.rollups import SUMS, rebuild_coarse

    started = time.perf_counter()
    columns = ["date", "provider", "model", "user_id", "feature", *SUMS, "latency_histogram"]
    with connection.cursor() as cursor:
        cursor.execute("SET work_mem = '256MB'")
        cursor.execute("TRUNCATE llm_llmusagedaily")
        cursor.execute(f"INSERT INTO llm_llmusagedaily ({', '.join(columns)}) {rollup_select()}")
        rebuild_coarse()  # the coarser rollups, from the finest
        cursor.execute("RESET work_mem")
    return time.perf_counter() - started


def check_rollups() -> list[list[object]]:
    """Every rollup total against the same total computed straight from the raw table; raises if one differs."""
    from django.db import connection

    from apps.llm.accounting.rollups import SUMS, all_rollups

    not_cached = "FILTER (WHERE NOT cached)"
    raw_sums = {
        "requests": "count(*)",
        "successes": "count(*) FILTER (WHERE status = 'success')",
        "failures": "count(*) FILTER (WHERE status = 'error')",
        "cache_hits": "count(*) FILTER (WHERE cached)",
        **{
            c: f"coalesce(sum({c}) {not_cached}, 0)"
            for c in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "total_tokens")
        },
        **{c: f"coalesce(sum({c}), 0)" for c in ("cost", "provider_cost", "saved_cost")},
        "latency_ms_sum": "coalesce(sum(round(latency_ms)::bigint), 0)",
        **COMPLETENESS,
    }
    assert set(raw_sums) == set(SUMS)
    with connection.cursor() as cursor:
        cursor.execute("SET work_mem = '256MB'")
        cursor.execute(
            f"SELECT {', '.join(raw_sums[c] for c in SUMS)}, count(*), "
            f"(SELECT count(*) FROM (SELECT 1 FROM llm_llmrequest GROUP BY "
            f"(created_at AT TIME ZONE 'UTC')::date, provider, "
            f"coalesce(nullif(model, ''), model_requested), "
            f"user_id, feature) AS g) FROM llm_llmrequest"
        )
        raw = cursor.fetchone()
        rolled = []
        for rollup in reversed(all_rollups()):  # the finest first
            cursor.execute(
                f"SELECT {', '.join(f'coalesce(sum({c}), 0)' for c in SUMS)}, "
                f"coalesce(sum((SELECT sum(x) FROM unnest(latency_histogram) AS x)), 0), count(*) "
                f"FROM {rollup.table}"
            )
            rolled.append(cursor.fetchone())
        cursor.execute("RESET work_mem")
    names = [*SUMS, "latency histogram (all buckets)", "groups = rollup rows"]
    rows = []
    for index, name in enumerate(names):
        # Coarser rollups have fewer rows than groups of the finest key: only their sums compare.
        values = [r[index] for r in (rolled if index < len(SUMS) + 1 else rolled[:1])]
        rows.append(
            [
                name,
                str(raw[index]),
                *(str(v) for v in values),
                *[""] * (len(rolled) - len(values)),
                all(v == raw[index] for v in values),
            ]
        )
    bad = [row[0] for row in rows if not row[-1]]
    assert not bad, f"rollup totals differ from the raw table: {bad}"
    return rows


def check_costs(cat: Catalog, sample: int = 3000) -> int:
    """Re-price a random sample of seeded rows with the application's own cost function."""
    from django.db.models import Q

    from apps.llm.costs import calculate_cost
    from apps.llm.models import LLMRequest, ModelPrice
    from apps.llm.types import Usage

    pricings = {r.pk: r.to_pricing() for r in ModelPrice.objects.filter(pk__in=[int(p) for p in cat.price_id if p])}
    # A cache hit of embeddings spent no tokens and saved nothing: it has no cost to re-check.
    rows = (
        LLMRequest.objects.filter(price__isnull=False)
        .filter(Q(cached=False) | Q(saved_cost__isnull=False))
        .order_by("?")[:sample]
    )
    checked = 0
    for row in rows.iterator():
        usage = Usage(
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            total_tokens=row.total_tokens,
            cached_tokens=row.cached_tokens,
            cache_write_tokens=row.cache_write_tokens,
            reasoning_tokens=row.reasoning_tokens,
        )
        expected = calculate_cost(pricings[row.price_id], usage).total
        actual = row.saved_cost if row.cached else row.cost
        assert actual == expected, f"{row.pk}: {actual} != {expected}"
        if row.provider == "openrouter" and not row.cached:
            assert row.provider_cost == expected
        checked += 1
    return checked


# -- the two read paths ----------------------------------------------------------------------------


def raw_stats(*, days: int = 30, user=None, feature=None, model=None, provider=None):
    """What usage_stats() returns, aggregated from LLMRequest over the same UTC days."""
    from django.db.models import Count, Q, Sum, Value
    from django.db.models.functions import Coalesce, NullIf
    from django.utils import timezone

    from apps.llm.models import LLMRequest
    from apps.llm.types import UsageStats

    end = timezone.localdate()
    start = end - timedelta(days=days - 1)
    # Rollup rows are keyed by the UTC date of created_at (rollups.deltas: created_at.date()).
    low = datetime.combine(start, datetime.min.time(), tzinfo=UTC)
    high = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    rows = LLMRequest.objects.filter(created_at__gte=low, created_at__lt=high)
    if user is not None:
        rows = rows.filter(user_id=getattr(user, "pk", user))
    if feature is not None:
        rows = rows.filter(feature=feature)
    if model is not None:  # the rollup's model is `model or model_requested`
        rows = rows.filter(Q(model=model) | Q(model="", model_requested=model))
    if provider is not None:
        rows = rows.filter(provider=provider)
    totals = rows.aggregate(
        requests=Count("pk"),
        failures=Count("pk", filter=Q(status="error")),
        cache_hits=Count("pk", filter=Q(cached=True)),
        total_tokens=Sum("total_tokens", filter=Q(cached=False)),
        cost=Sum("cost"),
        saved_cost=Sum("saved_cost"),
    )
    requests, hits, failures = totals["requests"], totals["cache_hits"], totals["failures"]
    misses = requests - hits - failures
    models = (
        rows.order_by()
        .annotate(m=Coalesce(NullIf("model", Value("")), "model_requested"))
        .values_list("m", flat=True)
        .distinct()
    )
    return UsageStats(
        total_requests=requests,
        total_tokens=totals["total_tokens"] or 0,
        total_cost=(totals["cost"] or Decimal(0)).normalize(),
        saved_cost=(totals["saved_cost"] or Decimal(0)).normalize(),
        cache_hits=hits,
        cache_misses=misses,
        cache_hit_rate=hits / (hits + misses) if hits + misses else 0.0,
        models_used=sorted(models),
        errors=failures,
    )


def variants(cat: Catalog) -> list[tuple[str, dict]]:
    from django.db.models import Sum
    from django.utils import timezone

    from apps.llm.models import LLMUsageDaily

    since = timezone.localdate() - timedelta(days=29)
    by_user = list(
        LLMUsageDaily.objects.filter(date__gte=since, user_id__isnull=False)
        .values("user_id")
        .annotate(n=Sum("requests"))
        .order_by("-n", "user_id")
        .values_list("user_id", flat=True)
    )
    heavy, typical = by_user[0], by_user[len(by_user) // 2]
    return [
        ("days=30", {}),
        (f"user={heavy} (busiest)", {"user": heavy}),
        (f"user={typical} (median)", {"user": typical}),
        ("feature=chat.assistant", {"feature": "chat.assistant"}),
        ("model=gpt-4o-mini", {"model": "gpt-4o-mini"}),
    ]


CALIBRATION_SQL = "SELECT sum(i) FROM generate_series(1, 100000) AS i"


def measure(
    cases: list[tuple[str, dict]], reps: int
) -> tuple[list[list[object]], dict[str, tuple[float, float]], float]:
    """Interleaved timings of both paths per case; also a fixed query, to compare runs made under other loads."""
    from django.db import connection

    from apps.llm.accounting.usage import usage_stats

    def calibration() -> None:
        with connection.cursor() as cursor:
            cursor.execute(CALIBRATION_SQL)
            cursor.fetchone()

    for _, kwargs in cases:  # warm caches, and the correctness check
        rolled, raw = usage_stats(days=30, **kwargs), raw_stats(days=30, **kwargs)
        assert rolled == raw, f"{kwargs}: rollups {rolled!r} != raw {raw!r}"
        assert rolled.total_requests > 0
    times = {(name, path): [] for name, _ in cases for path in ("rollup", "raw")}
    calibrations = []
    for rep in range(reps):
        for name, kwargs in cases[rep % len(cases) :] + cases[: rep % len(cases)]:
            paths = [("rollup", usage_stats), ("raw", raw_stats)]
            for path, fn in paths if rep % 2 == 0 else paths[::-1]:
                started = time.perf_counter()
                fn(days=30, **kwargs)
                times[(name, path)].append(time.perf_counter() - started)
            started = time.perf_counter()
            calibration()
            calibrations.append(time.perf_counter() - started)
    rows, medians = [], {}
    for name, kwargs in cases:
        stats = usage_stats(days=30, **kwargs)
        r50, r95 = (statistics.median(times[(name, "rollup")]) * 1000, percentile(times[(name, "rollup")], 0.95) * 1000)
        w50, w95 = (statistics.median(times[(name, "raw")]) * 1000, percentile(times[(name, "raw")], 0.95) * 1000)
        medians[name] = (r50, w50)
        rows.append([name, stats.total_requests, r50, r95, w50, w95, w50 / r50, "yes"])
    return rows, medians, statistics.median(calibrations) * 1000


def explain(cases: list[tuple[str, dict]]) -> None:
    """EXPLAIN ANALYZE of the aggregate query of each raw case, and of two rollup cases."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.llm.accounting.usage import usage_stats

    runs = [("raw", raw_stats, name, kwargs) for name, kwargs in cases]
    runs += [("rollup", usage_stats, name, kwargs) for name, kwargs in cases if set(kwargs) <= {"feature"}]
    for index, (path, fn, name, kwargs) in enumerate(runs):
        with CaptureQueriesContext(connection) as captured:
            fn(days=30, **kwargs)
        aggregate = captured.captured_queries[0]["sql"]
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {aggregate}")
            plan = "\n".join("    " + line for (line,) in cursor.fetchall())
        shown = f"\n    {aggregate}\n\n" if index in (0, len(cases)) else "\n"
        print(f"\nEXPLAIN ANALYZE, {path} path, {name} (its aggregate query):\n{shown}{plan}")


def sizes() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('llm_llmrequest')), "
            "pg_size_pretty(pg_total_relation_size('llm_llmusagedaily')), "
            "(SELECT count(*) FROM llm_llmusagedaily), "
            "(SELECT count(*) FROM llm_llmusagedaily WHERE date >= current_date - 29)"
        )
        raw, rollup, rollup_rows, window_rows = cursor.fetchone()
    return {"raw": raw, "rollup": rollup, "rollup_rows": rollup_rows, "window_rows": window_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the request log (default 1M)")
    parser.add_argument("--steps", help="grow the table through these sizes, measuring at each: 1000000,3000000")
    parser.add_argument("--reps", type=int, default=30, help="timed repetitions of each case and path")
    parser.add_argument("--db", default="bench_usage_stats", help="the scratch database's name (bench_...)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database at the end")
    parser.add_argument("--reuse", action="store_true", help="reuse an existing scratch database and its rows")
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")] if args.steps else [args.rows]
    assert steps == sorted(steps), "--steps must grow"

    with scratch_session(args.db, reuse=args.reuse, keep=args.keep):
        from django.db import connection

        from apps.llm.models import LLMRequest

        cat = Catalog(args.seed)
        print(
            f"Scratch database {args.db!r}; {len(cat.models)} models over "
            f"{len(set(cat.provider.tolist()))} providers, {len(cat.user_activity)} users, "
            f"{len(cat.features)} features, {len(cat.t_p)} (user, feature, model) combinations"
        )
        summary_rows = []
        for step_index, target in enumerate(steps):
            present = LLMRequest.objects.count()
            print(f"\n=== {target:,} rows (present: {present:,}) ===")
            if present < target:
                seconds = seed(cat, target - present, args.seed + present)
                print(
                    f"  COPY: {target - present:,} rows in {seconds:.1f} s ({(target - present) / seconds:,.0f} rows/s)"
                )
                seconds = build_rollups()
                print(f"  rollups rebuilt with one INSERT ... SELECT ... GROUP BY in {seconds:.1f} s")
                started = time.perf_counter()
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM (ANALYZE) llm_llmrequest")
                    cursor.execute("VACUUM (ANALYZE) llm_llmusagedaily")
                print(f"  VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")
            elif present > target:
                print(f"  (the table already holds more rows than {target:,}: measuring at {present:,})")
            try:
                checks = check_rollups()
            except AssertionError:
                print("  rollups out of date: rebuilding")
                build_rollups()
                checks = check_rollups()
            print("\nRollup totals vs raw totals (whole table)\n")
            print(table(["sum", "raw table", "LLMUsageDaily", "LLMUsageByModel", "LLMUsageByUser", "equal"], checks))
            if step_index == 0:
                print(f"\nCosts re-priced with calculate_cost(): {check_costs(cat)} sampled rows match")
            rows_now = LLMRequest.objects.count()
            info = sizes()
            print(
                f"\nLLMRequest: {rows_now:,} rows, {info['raw']}; LLMUsageDaily: {info['rollup_rows']:,} rows "
                f"({info['window_rows']:,} in the 30-day window), {info['rollup']}"
            )
            cases = variants(cat)
            rows, medians, calibration = measure(cases, args.reps)
            load = os.getloadavg()[0]
            print(
                f"\nusage_stats(days=30, ...) from rollups vs the raw log, {rows_now:,} rows, "
                f"{args.reps} interleaved repetitions each\n"
            )
            print(
                table(
                    [
                        "case",
                        "requests",
                        "rollup p50 ms",
                        "rollup p95 ms",
                        "raw p50 ms",
                        "raw p95 ms",
                        "raw/rollup",
                        "identical",
                    ],
                    rows,
                )
            )
            print(
                f"\n(target: rollup path < 50 ms and flat as the table grows; calibration query "
                f"`{CALIBRATION_SQL}` p50 {calibration:.3f} ms, interleaved; load average {load:.1f} on "
                f"{os.cpu_count()} CPUs)"
            )
            summary_rows.extend(
                [
                    [f"{rows_now:,}", name, r50, w50, calibration, r50 / calibration, w50 / calibration]
                    for name, (r50, w50) in medians.items()
                ]
            )
            if step_index == len(steps) - 1:
                explain(cases)
        if len(steps) > 1:
            print("\nAll steps (medians, ms)\n")
            print(
                table(
                    [
                        "rows",
                        "case",
                        "rollup p50 ms",
                        "raw p50 ms",
                        "calibration p50 ms",
                        "rollup/calibration",
                        "raw/calibration",
                    ],
                    summary_rows,
                )
            )
            print(
                "\n(x/calibration: the median over a fixed query timed in the same loop, so that steps measured "
                "under different machine loads compare)"
            )


if __name__ == "__main__":
    main()
