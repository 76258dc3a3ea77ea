"""A trace crosses a Dramatiq message: the actor's LLM calls join the trace the message was sent in."""

from __future__ import annotations

import contextvars
import threading

import dramatiq
import pytest
from django.db.models import Sum

from apps.llm import llm_context, llm_trace
from apps.llm.accounting.request_log import SyncDatabaseRecorder
from apps.llm.accounting.trace_middleware import OPTION
from apps.llm.models import LLMRequest, LLMTrace

#: The client the actor below calls with (set by the test: actors take JSON arguments only).
_client = {}


@dramatiq.actor(actor_name="tests.llm.summarise", queue_name="tests-llm-trace", max_retries=0)
def summarise(text: str) -> None:
    _client["client"].chat_completion([{"role": "user", "content": text}], "gpt-4o-mini", cache=False)


@pytest.mark.django_db(transaction=True)
def test_a_trace_spans_a_thread_and_a_message_processed_by_a_worker(
    stub_broker, make_client, sim, django_user_model, price_table
):
    _client["client"] = client = make_client(sim, key="sk-test-trace-mw-0000", recorders=[SyncDatabaseRecorder()])
    owner = django_user_model.objects.create_user(username="owner", email="owner@example.com")
    worker = dramatiq.Worker(stub_broker, worker_timeout=100)
    worker.start()
    try:
        with llm_trace("report", subject=owner, tags=["nightly"]) as trace:
            client.chat_completion([{"role": "user", "content": "plan"}], "gpt-4o-mini", cache=False)
            with llm_trace("fan-out") as fan_out:
                thread = threading.Thread(
                    target=contextvars.copy_context().run,
                    args=(client.chat_completion, [{"role": "user", "content": "in a thread"}], "gpt-4o-mini"),
                    kwargs={"cache": False},
                )
                thread.start()
                thread.join()
                message = summarise.send("in a worker")
            stub_broker.join(summarise.queue_name)
            worker.join()
        with llm_context(feature="untraced"):
            summarise.send("sent outside any trace")
        stub_broker.join(summarise.queue_name)
        worker.join()
    finally:
        worker.stop()

    assert message.options[OPTION]["trace_id"] == str(trace.id)
    calls = LLMRequest.objects.filter(trace_id=trace.id)
    assert calls.count() == 3
    assert sorted(calls.values_list("span_id", flat=True)) == sorted([trace.id, fan_out.id, fan_out.id])
    assert all(c.tags == ["nightly"] and c.subject == owner for c in calls)
    root = LLMTrace.objects.get(pk=trace.id)
    assert root.requests == 3 and root.cost == calls.aggregate(c=Sum("cost"))["c"] > 0
    assert LLMTrace.objects.get(pk=fan_out.id).requests == 2
    untraced = LLMRequest.objects.get(trace__isnull=True)
    assert untraced.feature == "untraced" and untraced.tags == []
