"""Every call ends in exactly one request-log row, however it ends (issue: numbers a finance team can sign).

Real SDK against the loopback simulator; the rows are the real request log's.
"""

from __future__ import annotations

import gc
from decimal import Decimal

import pytest

from apps.llm import errors
from apps.llm.models import Budget, BudgetSpend, LLMRequest
from apps.llm.testing.simulator import CHAT, SimResponse
from apps.llm.transport.retry import RetryPolicy

pytestmark = pytest.mark.django_db

KEY = "sk-test-endings-0123456789"
MODEL = "gpt-4o-mini"
#: A long answer: many deltas, so a caller can stop after a few.
ASK = [{"role": "user", "content": "Write twenty sentences about the sea, please, at length."}]
FAST_RETRIES = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002)


@pytest.fixture
def client(make_client, sim):
    return make_client(sim, key=KEY, retry=FAST_RETRIES)


@pytest.fixture
def budget():
    """A hard limit on the calls of these tests: its reservations must always come back to 0."""
    return Budget.objects.create(name="endings", scope=Budget.Scope.GLOBAL, hard_limit=Decimal("100"))


def reserved(budget: Budget) -> Decimal:
    return sum((s.reserved for s in BudgetSpend.objects.filter(budget=budget)), Decimal(0))


def only_row() -> LLMRequest:
    (row,) = LLMRequest.objects.all()
    return row


def chunk(content: str | None = None, *, finish: str | None = None, usage: dict | None = None) -> dict:
    delta = {"content": content} if content is not None else {}
    return {
        "id": "chatcmpl-sse",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
        "usage": usage,
    }


def assert_priced_from_a_local_count(row: LLMRequest, budget: Budget) -> None:
    assert row.status == LLMRequest.Status.SUCCESS and row.endpoint == "chat.stream"
    assert row.usage_estimated and row.prompt_tokens > 0 and row.completion_tokens > 0
    assert row.cost is not None and row.cost > 0
    assert reserved(budget) == 0
    spent = BudgetSpend.objects.get(budget=budget).spent
    assert spent == row.cost


def test_a_stream_the_caller_breaks_off_after_three_deltas(client, budget):
    with client.chat_completion(ASK, MODEL, stream=True) as stream:
        for n, _ in enumerate(stream, 1):
            if n == 3:
                break
    row = only_row()
    assert_priced_from_a_local_count(row, budget)
    assert stream.response is not None and row.response == stream.response.content
    assert row.completion_tokens == client.tokenizer.count_tokens(stream.response.content, MODEL)


def test_a_stream_dropped_unfinished_is_recorded_when_collected(client, budget):
    stream = client.chat_completion(ASK, MODEL, stream=True)
    next(stream), next(stream)
    assert LLMRequest.objects.count() == 0
    del stream
    gc.collect()
    assert_priced_from_a_local_count(only_row(), budget)


def test_a_stream_abandoned_by_an_exception_in_the_callers_loop(client, budget):
    def read() -> None:
        for _ in client.chat_completion(ASK, MODEL, stream=True):
            raise KeyError("the caller's own bug")

    with pytest.raises(KeyError):
        read()
    gc.collect()
    assert_priced_from_a_local_count(only_row(), budget)


def test_a_closed_stream(client, budget):
    stream = client.chat_completion(ASK, MODEL, stream=True)
    first = next(stream)
    stream.close()
    stream.close()  # twice is harmless
    row = only_row()
    assert_priced_from_a_local_count(row, budget)
    assert row.response == first


def test_a_stream_without_a_usage_chunk(client, sim, budget):
    sim.enqueue(CHAT, SimResponse(sse=[chunk("Waves "), chunk("break "), chunk("ashore.", finish="stop"), "[DONE]"]))
    stream = client.chat_completion(ASK, MODEL, stream=True)
    assert stream.text() == "Waves break ashore."
    assert stream.response.usage_estimated and stream.response.cost > 0
    row = only_row()
    assert_priced_from_a_local_count(row, budget)
    assert row.completion_tokens == client.tokenizer.count_tokens("Waves break ashore.", MODEL)


def test_a_stream_cut_by_the_server(client, sim, budget):
    error_event = {"error": {"message": "Upstream connection reset", "code": 502}}
    sim.enqueue(CHAT, SimResponse(sse=[chunk("The sea "), chunk("is wide "), error_event]))
    stream = client.chat_completion(ASK, MODEL, stream=True)
    with pytest.raises(errors.LLMError):
        stream.text()
    row = only_row()
    assert row.status == LLMRequest.Status.ERROR and row.response == "The sea is wide "
    assert row.usage_estimated and row.completion_tokens > 0 and row.cost > 0
    assert reserved(budget) == 0 and BudgetSpend.objects.get(budget=budget).spent == row.cost


def test_a_consumed_stream_is_one_row_with_the_providers_usage(client, budget):
    stream = client.chat_completion(ASK, MODEL, stream=True)
    text = stream.text()
    row = only_row()
    assert row.response == text and not row.usage_estimated
    assert row.total_tokens == stream.response.usage.total_tokens > 0
    assert reserved(budget) == 0


def test_a_stream_never_iterated_sent_nothing_and_records_nothing(client, sim):
    stream = client.chat_completion(ASK, MODEL, stream=True)
    del stream
    gc.collect()
    assert sim.count(CHAT) == 0 and LLMRequest.objects.count() == 0


# -- tool calls -------------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
FORCE = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_are_returned_and_logged(client, stream):
    ask = [{"role": "user", "content": "Weather in Oslo?"}]
    if stream:
        s = client.chat_completion(ask, MODEL, stream=True, tools=[WEATHER], tool_choice=FORCE)
        s.text()
        response = s.response
    else:
        response = client.chat_completion(ask, MODEL, tools=[WEATHER], tool_choice=FORCE)
    (call,) = response.tool_calls
    assert call["type"] == "function" and call["function"]["name"] == "get_weather" and call["id"]
    assert isinstance(call["function"]["arguments"], str) and call["function"]["arguments"].startswith("{")
    row = only_row()
    assert row.tool_calls == response.tool_calls


def test_streamed_tool_call_fragments_are_joined():
    from apps.llm.transport.streaming import StreamedAnswer

    class Obj:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    def tool_chunk(index, id=None, name=None, arguments=None):
        function = Obj(name=name, arguments=arguments)
        call = Obj(index=index, id=id, type="function" if id else None, function=function)
        delta = Obj(content=None, tool_calls=[call])
        return Obj(usage=None, model="m", id="c", choices=[Obj(finish_reason=None, delta=delta)])

    answer = StreamedAnswer(requested_model="m")
    for c in [
        tool_chunk(0, "call_a", "get_weather", ""),
        tool_chunk(1, "call_b", "get_time", '{"tz":'),
        tool_chunk(0, arguments='{"city": '),
        tool_chunk(0, arguments='"Oslo"}'),
        tool_chunk(1, arguments=' "UTC"}'),
    ]:
        answer.add(c, started=0.0)
    assert answer.response().tool_calls == [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'}},
    ]


# -- malformed answers ------------------------------------------------------------------------------


def test_a_garbled_body_is_retried_then_typed_with_one_row(client, sim):
    garbled = SimResponse(body="{not json", headers={"content-type": "application/json"})
    sim.enqueue(CHAT, garbled, garbled)
    with pytest.raises(errors.InvalidResponse, match="not valid JSON") as failure:
        client.chat_completion(ASK, MODEL)
    assert failure.value.attempts == 2
    row = only_row()
    assert (row.status, row.error_type, row.attempts) == ("error", "InvalidResponse", 2)


def test_a_garbled_body_then_a_good_one_succeeds(client, sim):
    sim.enqueue(CHAT, SimResponse(body="<html>oops</html>", headers={"content-type": "application/json"}))
    response = client.chat_completion(ASK, MODEL)
    assert response.content and response.attempts == 2
    assert only_row().status == "success"


def test_an_answer_without_choices_is_typed_with_the_attempts(client, sim):
    empty = SimResponse(json={"id": "x", "object": "chat.completion", "model": MODEL, "choices": []})
    sim.enqueue(CHAT, empty, empty)
    with pytest.raises(errors.InvalidResponse, match="no choices"):
        client.chat_completion(ASK, MODEL)
    row = only_row()
    assert (row.error_type, row.attempts) == ("InvalidResponse", 2)


def test_a_garbled_stream_chunk_is_typed_with_one_row(client, sim):
    sim.enqueue(CHAT, SimResponse(sse=[chunk("Hello "), b"data: {broken\n\n"]))
    stream = client.chat_completion(ASK, MODEL, stream=True)
    with pytest.raises(errors.InvalidResponse, match="invalid stream chunk"):
        stream.text()
    row = only_row()
    assert row.error_type == "InvalidResponse" and row.response == "Hello "
