"""The demo's simulated provider and the private client that talks to it.

The simulator poses as OpenRouter, so the costs come from the real price table and the
simulator reports OpenRouter's ``usage.cost`` from the bundled catalog. The client is private
to the demo: its own cache, no budgets, quick retries, and records that go through
``DemoRecorder``.
"""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.locmem import LocMemCache

from apps.demo.plan import DEMO_MODELS, PlannedCall
from apps.demo.recorder import DemoRecorder
from apps.llm import errors
from apps.llm.accounting.budgets import BudgetGuard
from apps.llm.accounting.context import llm_context
from apps.llm.accounting.records import Recorder
from apps.llm.accounting.request_log import SyncDatabaseRecorder, default_recorder
from apps.llm.client import LLMClient
from apps.llm.conf import llm_settings
from apps.llm.pricing.lookup import ModelsCache
from apps.llm.pricing.store import DATA_DIR
from apps.llm.testing.simulator import CHAT, OpenAISimulator
from apps.llm.transport.retry import RetryPolicy

__all__ = [
    "ERROR_RATE",
    "MAX_ATTEMPTS",
    "SIMULATOR_KEY",
    "demo_client",
    "demo_simulator",
    "make_call",
    "perform",
    "request_log",
]

#: Only ever sent to the loopback simulator.
SIMULATOR_KEY = "sk-or-demo-simulator-not-a-real-key"

#: Share of calls the simulator answers with a 429 or a 500 (the client retries once).
ERROR_RATE = 0.06
#: Tries per call: one retry shows up as attempts=2; two failures in a row as an error row.
MAX_ATTEMPTS = 2


class _NoBudgets(BudgetGuard):
    """Simulated spending must not use up the real budgets of today."""

    def budgets(self) -> list:
        return []


def request_log() -> Recorder:
    """The real request log, even when logging is off: filling it is the point of the demo."""
    recorder = default_recorder()
    if recorder is None:  # LLM_REQUEST_LOG=off: the demo exists to fill the log, so write anyway
        config = llm_settings()
        recorder = SyncDatabaseRecorder(store_text=config.store_text, text_limit=config.text_limit)
    return recorder


def _simulator_catalog(models: Sequence[str]) -> dict[str, Any]:
    """The bundled OpenRouter catalog entries of ``models``, so the simulator reports usage.cost."""
    wanted = set(models)
    entries = {}
    for path in sorted(DATA_DIR.glob("openrouter-*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8")).get("data", []):
            if entry.get("id") in wanted:
                entries[entry["id"]] = entry
    return {"data": list(entries.values())}


def demo_simulator(seed: int) -> OpenAISimulator:
    """The loopback provider of a run: some calls fail, and it prices the demo models as OpenRouter does."""
    return OpenAISimulator(
        error_rate=ERROR_RATE, seed=seed, openrouter_catalog=_simulator_catalog(DEMO_MODELS), keep_requests=100
    )


def demo_client(sim: OpenAISimulator, recorder: DemoRecorder, seed: int) -> LLMClient:
    """An ``LLMClient`` of the demo's own, pointed at ``sim`` as if it were OpenRouter."""
    client = LLMClient(
        apikey_openrouter=SIMULATOR_KEY,
        openrouter_base_url=sim.openrouter_base_url,
        configure_from_env=False,
        timeout=30.0,
        # Quick retries: the simulator's Retry-After would only slow the demo down.
        retry=RetryPolicy(
            max_attempts=MAX_ATTEMPTS,
            base_delay=0.005,
            max_delay=0.02,
            max_retry_after=0.02,
            total_timeout=30.0,
            rng=random.Random(seed),
        ),
        # A private cache: real traffic must never be answered from simulated responses (or
        # the reverse), and each run starts cold so the same seed gives the same hits.
        cache_backend=LocMemCache(f"llm-demo-{uuid.uuid4().hex}", {"MAX_ENTRIES": 1_000_000}),
        models_cache=ModelsCache(),
        recorders=[recorder],
    )
    client.budgets = _NoBudgets()
    return client


def make_call(client: LLMClient, sim: OpenAISimulator, call: PlannedCall, users: list[Any]) -> None:
    """Make one planned call, setting the simulator's knobs for it first; a failure raises ``LLMError``
    (a trace's step lets it end its spans with an error)."""
    sim.reasoning_tokens = call.reasoning_tokens
    sim.cached_fraction = call.cached_fraction
    if call.incident:
        sim.fail_next(CHAT, MAX_ATTEMPTS, status=call.incident, retry_after=0.01 if call.incident == 429 else None)
    user = users[call.user] if call.user is not None else None
    with llm_context(user=user, feature=call.feature):
        if call.kind == "embedding":
            client.generate_embedding(call.texts, model=call.model)
        elif call.kind == "stream":
            client.chat_completion_stream(call.messages, call.model, **call.params).text()
        else:
            client.chat_completion(call.messages, call.model, **call.params)


def perform(client: LLMClient, sim: OpenAISimulator, call: PlannedCall, users: list[Any]) -> None:
    """Make one planned call; failures are kept, not raised."""
    # The client has logged the failure: showing failures is part of the demo.
    with contextlib.suppress(errors.LLMError):
        make_call(client, sim, call, users)
