"""The request log: every call stored once, rollups exact, nothing lost when the database is away."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Sum

from apps.llm import errors
from apps.llm.accounting.context import llm_context
from apps.llm.accounting.records import ERROR, SUCCESS, CallRecord
from apps.llm.accounting.request_log import (
    DatabaseRecorder,
    SyncDatabaseRecorder,
    replay_spool,
    write_records,
)
from apps.llm.accounting.spool import record_from_json, record_to_json
from apps.llm.accounting.usage import usage_stats
from apps.llm.client import LLMClient
from apps.llm.models import LATENCY_BUCKETS_MS, LLMRequest, LLMUsageDaily
from apps.llm.testing.simulator import CHAT
from apps.llm.transport.retry import RetryPolicy
from apps.llm.types import Usage
from tests.helpers import server_admin_connection, wait_for

KEY = "sk-proj-" + "Z9y8X7w6" * 5
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def client_for(make_client, sim) -> Callable[..., LLMClient]:
    """``client_for(recorder)``: a client of the simulator that records through ``recorder``."""

    def make(recorder, **kwargs) -> LLMClient:
        return make_client(
            sim, key=KEY, recorders=[recorder], retry=RetryPolicy(max_attempts=2, base_delay=0.01), **kwargs
        )

    return make


def make_record(**overrides) -> CallRecord:
    values = {
        "endpoint": "chat",
        "provider": "openai",
        "requested_model": "gpt-4o-mini",
        "model": "gpt-4o-mini",
        "status": SUCCESS,
        "usage": Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
        "cost": Decimal("0.0000045"),
        "latency_ms": 120.0,
        "feature": "tests",
    }
    return CallRecord(**(values | overrides))


# -- what is recorded -------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_kind_of_call_is_a_row(sim, client_for, admin_user):
    client = client_for(SyncDatabaseRecorder(store_text=True, text_limit=10))
    with llm_context(user=admin_user, feature="support.reply"):
        first = client.chat_completion(HELLO, "gpt-4o-mini")
        hit = client.chat_completion(HELLO, "gpt-4o-mini")
        client.chat_completion_stream([{"role": "user", "content": "stream it"}], "gpt-4o-mini").text()
        client.generate_embedding(["a", "b"], model="text-embedding-3-small", feature="knowledge.embed")
    sim.fail_next(CHAT, 2, status=500)
    with pytest.raises(errors.ServerError):
        client.chat_completion([{"role": "user", "content": "fails"}], "gpt-4o-mini")

    rows = list(LLMRequest.objects.order_by("created_at"))
    assert [(r.endpoint, r.status, r.cached) for r in rows] == [
        ("chat", "success", False),
        ("chat", "success", True),
        ("chat.stream", "success", False),
        ("embeddings", "success", False),
        ("chat", "error", False),
    ]
    success, cache_hit, stream, embedding, failure = rows
    assert success.cost == first.cost and success.price_id == first.price_id is not None
    assert success.prompt_tokens == first.usage.prompt_tokens and success.total_tokens == first.usage.total_tokens
    assert cache_hit.cost == 0 and cache_hit.saved_cost == first.cost == hit.saved_cost
    assert stream.time_to_first_token_ms is not None and stream.cost > 0
    assert (embedding.feature, embedding.user_id) == ("knowledge.embed", admin_user.pk)
    assert (failure.error_type, failure.attempts, failure.cost) == ("ServerError", 2, None)
    assert [r.user_id for r in rows] == [admin_user.pk] * 4 + [None]
    assert [r.feature for r in rows] == ["support.reply"] * 3 + ["knowledge.embed", ""]
    # Text is kept (development/test default) but capped; the key never is.
    assert (
        success.prompt == HELLO and success.response.startswith(first.content[:10]) and "more chars" in success.response
    )
    for row in rows:
        assert row.key_fingerprint == client.providers["openai"].key_fingerprint
        assert KEY not in repr(row.__dict__)


@pytest.mark.django_db
def test_text_is_not_stored_when_not_allowed(sim, client_for):
    client = client_for(SyncDatabaseRecorder(store_text=False))
    client.chat_completion(HELLO, "gpt-4o-mini")
    row = LLMRequest.objects.get()
    assert row.prompt is None and row.response is None and row.total_tokens > 0


@pytest.mark.django_db
def test_rollups_match_the_raw_log_and_stats_filter(sim, client_for, admin_user):
    client = client_for(SyncDatabaseRecorder())
    for i in range(6):
        client.chat_completion(
            [{"role": "user", "content": f"q{i % 4}"}],
            "gpt-4o-mini",
            feature="a" if i % 2 else "b",
            user=admin_user if i < 3 else None,
        )
    client.generate_embedding("text", model="text-embedding-3-small", feature="a")
    sim.fail_next(CHAT, 2, status=503)
    with pytest.raises(errors.ServerError):
        client.chat_completion(HELLO, "gpt-4o-mini", feature="b")

    raw = LLMRequest.objects.aggregate(n=Count("id"), cost=Sum("cost"), saved=Sum("saved_cost"))
    rolled = LLMUsageDaily.objects.aggregate(
        n=Sum("requests"), cost=Sum("cost"), saved=Sum("saved_cost"), fails=Sum("failures"), hits=Sum("cache_hits")
    )
    assert (rolled["n"], rolled["cost"], rolled["saved"]) == (raw["n"], raw["cost"], raw["saved"])
    assert (rolled["fails"], rolled["hits"]) == (1, 2)
    fresh_tokens = LLMRequest.objects.filter(cached=False).aggregate(t=Sum("total_tokens"))["t"]
    assert LLMUsageDaily.objects.aggregate(t=Sum("total_tokens"))["t"] == fresh_tokens
    histogram = [sum(col) for col in zip(*LLMUsageDaily.objects.values_list("latency_histogram", flat=True))]
    assert len(histogram) == len(LATENCY_BUCKETS_MS) + 1 and sum(histogram) == raw["n"]

    stats = client.get_usage_stats()
    assert stats.total_requests == 8 and stats.total_cost == raw["cost"].normalize()
    assert (stats.cache_hits, stats.cache_misses, stats.errors) == (2, 5, 1)
    assert stats.models_used == ["gpt-4o-mini", "text-embedding-3-small"]
    by_feature = usage_stats(feature="a")
    expected_a = LLMRequest.objects.filter(feature="a").aggregate(n=Count("id"), cost=Sum("cost"))
    assert (by_feature.total_requests, by_feature.total_cost) == (expected_a["n"], expected_a["cost"].normalize())
    assert usage_stats(user=admin_user).total_requests == 3
    assert usage_stats(model="text-embedding-3-small").total_requests == 1
    assert usage_stats(start=datetime.now().date() + timedelta(days=1)).total_requests == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_rollups_exact():
    day = datetime(2026, 1, 5, 12, tzinfo=UTC)
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        barrier.wait()
        for _ in range(10):
            batch = [make_record(created_at=day, cost=Decimal("0.001"), feature=f"f{i % 3}") for i in range(5)]
            write_records(batch)
        connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = {r.feature: r for r in LLMUsageDaily.objects.filter(date=day.date())}
    counts = Counter(f"f{i % 3}" for i in range(5))
    assert {f: r.requests for f, r in rows.items()} == {f: 80 * c for f, c in counts.items()}
    assert sum(r.cost for r in rows.values()) == Decimal("0.400")
    assert LLMRequest.objects.count() == 400


# -- durability ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_background_recorder_writes_everything_and_cleans_its_spool(tmp_path):
    recorder = DatabaseRecorder(tmp_path / "spool", batch_size=7)
    records = [make_record() for _ in range(50)]
    for record in records:
        recorder.record(record)
    assert recorder.flush(30)
    recorder.close()
    assert set(LLMRequest.objects.values_list("id", flat=True)) == {r.id for r in records}
    assert LLMUsageDaily.objects.get().requests == 50
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


@pytest.mark.django_db(transaction=True)
def test_nothing_is_lost_while_the_database_is_unreachable(tmp_path):
    recorder = DatabaseRecorder(tmp_path / "spool", retry_interval=0.1)
    recorder.record(make_record())
    assert recorder.flush(30) and LLMRequest.objects.count() == 1
    name = connection.settings_dict["NAME"]
    admin = server_admin_connection()
    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    # Drop the recorder's connection: it must reconnect, and cannot.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    try:
        outage = [make_record() for _ in range(5)]
        for record in outage:
            recorder.record(record)
        wait_for(lambda: recorder.failures > 0, timeout=20, what="the recorder to meet the outage")
        spooled = {
            record_from_json(line).id
            for p in (tmp_path / "spool").glob("*.jsonl")
            for line in p.read_text().splitlines()
        }
        assert {r.id for r in outage} <= spooled
        assert LLMRequest.objects.count() == 1
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
    assert recorder.flush(30)
    recorder.close()
    assert LLMRequest.objects.count() == 6 and LLMUsageDaily.objects.get().requests == 6


@pytest.mark.django_db(transaction=True)
def test_a_dead_process_spool_is_replayed_once(tmp_path):
    dead_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    records = [make_record(cost=Decimal("0.01")) for _ in range(4)]
    write_records(records[:2])  # the process died after writing some of them
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / f"{dead_pid}-abcd1234-1.jsonl").write_text("".join(record_to_json(r) + "\n" for r in records))
    (spool / f"{dead_pid}-abcd1234-2.jsonl").write_text(record_to_json(records[0]) + "\n{not json\n")

    files, new_rows = replay_spool(spool)
    assert (files, new_rows) == (2, 2)
    assert LLMRequest.objects.count() == 4
    assert LLMUsageDaily.objects.get().requests == 4 and LLMUsageDaily.objects.get().cost == Decimal("0.04")
    assert replay_spool(spool) == (0, 0)
    assert "{not json" in (spool / f"{dead_pid}-abcd1234-2.bad").read_text()


@pytest.mark.django_db(transaction=True)
def test_a_record_the_database_refuses_is_set_aside_not_retried_forever(tmp_path):
    recorder = DatabaseRecorder(tmp_path / "spool")
    good = [make_record() for _ in range(3)]
    bad = make_record(usage=Usage(prompt_tokens=-1))  # violates a CHECK constraint
    for record in [good[0], bad, *good[1:]]:
        recorder.record(record)
    assert recorder.flush(30)
    recorder.close()
    assert set(LLMRequest.objects.values_list("id", flat=True)) == {r.id for r in good}
    assert [record_from_json(line).id for line in recorder.dead_letters.read_text().splitlines()] == [bad.id]


def test_failure_records_carry_the_error(sim):
    record = make_record(status=ERROR, error_type="RateLimitError", error_message="slow down")
    assert record_from_json(record_to_json(record)).error_type == "RateLimitError"


@pytest.mark.django_db(transaction=True)
def test_text_that_may_not_be_stored_never_reaches_the_spool(tmp_path):
    recorder = DatabaseRecorder(tmp_path / "spool", store_text=False, linger=5)
    recorder.record(make_record(prompt=[{"role": "user", "content": "secret plans"}], response_text="the answer"))
    spooled = "".join(p.read_text() for p in (tmp_path / "spool").glob("*.jsonl"))
    assert spooled and "secret plans" not in spooled and "the answer" not in spooled
    assert recorder.flush(30)
    recorder.close()
    assert LLMRequest.objects.get().prompt is None
