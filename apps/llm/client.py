"""``LLMClient``: one typed API over OpenRouter, OpenAI and OpenAI-compatible servers.

The client picks a provider, maps the model name, checks the cache, sends the request with
bounded retries and fallback, prices the answer from the price table and reports every call
(success, failure, cache hit) to its recorders.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, overload

from openai.types.chat import ChatCompletionMessageParam

from apps.llm import errors
from apps.llm.accounting.budgets import BudgetGuard, Reservation
from apps.llm.accounting.context import current_context
from apps.llm.accounting.otel import otel_recorder
from apps.llm.accounting.records import ERROR, REFUSED, SUCCESS, CallRecord, Recorder, UsageTally
from apps.llm.accounting.request_log import default_recorder
from apps.llm.accounting.usage import usage_stats
from apps.llm.cache import LLMCache, cache_key, file_cache
from apps.llm.conf import ProviderSettings, llm_settings
from apps.llm.costs import (
    CostBreakdown,
    calculate_chat_cost,
    calculate_cost,
    calculate_embedding_cost,
    usage_with_request,
)
from apps.llm.pricing.conservative import conservative_pricing
from apps.llm.pricing.lookup import ModelsCache
from apps.llm.tokenizer import Tokenizer
from apps.llm.transport.embeddings import BatchedEmbeddings, EmbeddingBatcher
from apps.llm.transport.providers import (
    COMPATIBLE,
    LOCAL,
    OPENAI,
    OPENROUTER,
    Provider,
    configured_providers,
)
from apps.llm.transport.responses import chat_fields_from_completion
from apps.llm.transport.retry import RetryPolicy, send
from apps.llm.transport.streaming import CONSUMED, ChatStream, StreamedAnswer
from apps.llm.types import ChatResponse, EmbeddingResponse, Usage, UsageStats

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CHAT_MODEL = "openai/gpt-4o-mini"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
#: Model names whose route (providers to try, in order) a client remembers.
ROUTES_REMEMBERED = 1024
#: Output tokens assumed by budget checks when the call sets no max_tokens.
OUTPUT_TOKENS_ESTIMATE = 1024

# Request parameters that change the answer, and so belong in the cache key.
_ANSWER_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "n",
    "reasoning_effort",
    "parallel_tool_calls",
)


class LLMClient:
    """Chat completions and embeddings with cost, caching, retries and fallback.

    Keys not passed here come from ``settings.LLM["PROVIDERS"]`` (this project fills it from
    ``OPENROUTER_API_KEY``, ``OPENAI_API_KEY``, ``LLM_BASE_URL``/``LLM_API_KEY``) unless
    ``configure_from_env=False``. ``provider_settings`` configures any registered provider
    (``apps.llm.transport.providers.register_provider``) by name.
    """

    def __init__(
        self,
        apikey_openrouter: str | None = None,
        apikey_openai: str | None = None,
        cache_dir: Path | str | None = None,
        cache_ttl: int = 3600,
        max_cache_size: int = 1000,
        models_cache_ttl: int = 86400,
        *,
        base_url: str | None = None,
        apikey_compatible: str | None = None,
        openrouter_base_url: str | None = None,
        openai_base_url: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        cache_backend: Any = None,
        models_cache: ModelsCache | None = None,
        recorders: Iterable[Recorder] | None = None,
        provider_settings: Mapping[str, ProviderSettings] | None = None,
        configure_from_env: bool = True,
    ):
        configured = {**(llm_settings().providers if configure_from_env else {}), **(provider_settings or {})}
        explicit = {
            OPENROUTER: (apikey_openrouter, openrouter_base_url),
            OPENAI: (apikey_openai, openai_base_url),
            COMPATIBLE: (apikey_compatible, base_url),
        }
        for name, (key, url) in explicit.items():
            if key or url:
                given = configured.get(name) or ProviderSettings()
                configured[name] = ProviderSettings(api_key=key or given.api_key, base_url=url or given.base_url)
        self.providers: dict[str, Provider] = configured_providers(configured, timeout=timeout)
        self._routes: dict[tuple[str, str | None], list[Provider]] = {}

        self.retry = retry or RetryPolicy()
        if cache_backend is None:
            cache_backend = (
                file_cache(Path(cache_dir), ttl=cache_ttl, max_entries=max_cache_size) if cache_dir else "llm"
            )
        self.cache = LLMCache(cache_backend, ttl=cache_ttl, max_size=max_cache_size)
        self.models_cache = models_cache or ModelsCache(ttl_seconds=models_cache_ttl)
        self.tokenizer = Tokenizer()
        self.budgets = BudgetGuard()
        self.tally = UsageTally()
        if recorders is None:  # the request log and the span export the LLM setting configures
            recorders = [r for r in [default_recorder(), otel_recorder()] if r is not None]
        self.recorders: list[Recorder] = [self.tally, *recorders]
        self._embeddings = EmbeddingBatcher(self.tokenizer)

    # -- public API ---------------------------------------------------------------------

    @property
    def primary_provider(self) -> str | None:
        return next(iter(self.providers), None)

    @overload
    def chat_completion(
        self,
        messages: list[dict[str, Any]],
        model: str = ...,
        *,
        provider: str | None = ...,
        stream: Literal[False] = ...,
        cache: bool = ...,
        user: Any = ...,
        feature: str = ...,
        tags: Iterable[str] | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        **params: Any,
    ) -> ChatResponse: ...

    @overload
    def chat_completion(
        self,
        messages: list[dict[str, Any]],
        model: str = ...,
        *,
        provider: str | None = ...,
        stream: Literal[True],
        cache: bool = ...,
        user: Any = ...,
        feature: str = ...,
        tags: Iterable[str] | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        **params: Any,
    ) -> ChatStream: ...

    @overload
    def chat_completion(
        self,
        messages: list[dict[str, Any]],
        model: str = ...,
        *,
        provider: str | None = ...,
        stream: bool,
        cache: bool = ...,
        user: Any = ...,
        feature: str = ...,
        tags: Iterable[str] | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        **params: Any,
    ) -> ChatResponse | ChatStream: ...

    def chat_completion(
        self,
        messages: list[dict[str, Any]],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        provider: str | None = None,
        stream: bool = False,
        cache: bool = True,
        user: Any = None,
        feature: str = "",
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatResponse | ChatStream:
        """Send a chat completion; ``stream=True`` returns a ``ChatStream`` of text deltas.

        ``user``, ``feature``, ``tags`` and ``metadata`` attribute the call in the request log (over the
        ``llm_context`` in force); ``cache=False`` bypasses the response cache; other keyword
        arguments (temperature, max_tokens, tools, response_format, seed, ...) go to the API.
        """
        if stream:
            return self.chat_completion_stream(
                messages,
                model,
                provider=provider,
                cache=cache,
                user=user,
                feature=feature,
                tags=tags,
                metadata=metadata,
                **params,
            )
        who = _attribution(user, feature, tags, metadata)
        providers = self._route(model, provider)
        key = self._chat_cache_key(providers[0], model, messages, params) if cache else ""
        started = time.perf_counter()
        attempts = 0

        def fetch() -> ChatResponse:
            nonlocal attempts
            reservation = self._reserve(providers[0], model, messages, params, who)
            response = None
            try:
                # Reading the answer is part of the try: a garbled body is retried like a 5xx.
                (answer, _), attempts = self._send(
                    providers,
                    model,
                    lambda p, name: chat_fields_from_completion(
                        p.client.chat.completions.create(
                            model=name, messages=_sdk_messages(messages), **p.request_options(), **params
                        ),
                        provider=p.name,
                        requested_model=model,
                    ),
                )
                # Built once, complete: a ChatResponse is frozen, and every copy costs the call time.
                response = ChatResponse(
                    **self._answer(answer, messages, params, reservation),
                    latency_ms=_elapsed_ms(started),
                    attempts=attempts,
                )
            finally:
                self.budgets.settle(reservation, response.cost if response else None)
            return response

        fetched: ChatResponse | None = None

        def fetch_payload() -> dict:
            nonlocal fetched
            fetched = fetch()
            return fetched.model_dump(mode="json")

        try:
            if cache:
                payload, hit = self.cache.get_or_call(key, fetch_payload)
                # The leader keeps the answer it fetched; only what came from the cache is parsed.
                response = _cache_hit(payload, started) if hit else cast(ChatResponse, fetched)
            else:
                response = fetch()
        except errors.LLMError as error:
            self._record_failure("chat", providers[0], model, error, started, attempts, key, who)
            raise
        self._record_chat("chat", providers[0], response, key, who, messages)
        return response

    def chat_completion_stream(
        self,
        messages: list[dict[str, Any]],
        model: str = DEFAULT_CHAT_MODEL,
        *,
        provider: str | None = None,
        cache: bool = True,
        user: Any = None,
        feature: str = "",
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatStream:
        """Yields text deltas; ``stream.response`` holds usage and cost once it is consumed."""
        who = _attribution(user, feature, tags, metadata)
        providers = self._route(model, provider)
        key = self._chat_cache_key(providers[0], model, messages, params) if cache else ""
        started = time.perf_counter()
        if cache and (payload := self.cache.get(key)) is not None:
            response = _cache_hit(payload, started)
            self._record_chat("chat.stream", providers[0], response, key, who, messages)
            return ChatStream.from_response(response)

        reservation = None

        def open_stream():
            nonlocal reservation
            reservation = self._reserve(providers[0], model, messages, params, who)
            return self._send(
                providers,
                model,
                lambda p, name: p.client.chat.completions.create(
                    model=name,
                    messages=_sdk_messages(messages),
                    stream=True,
                    stream_options={"include_usage": True},
                    **p.request_options(),
                    **params,
                ),
            )

        def finished(answer: StreamedAnswer, how: str) -> ChatResponse:
            response = ChatResponse(
                **self._answer(answer.fields(), messages, params, reservation), latency_ms=_elapsed_ms(started)
            )
            self.budgets.settle(reservation, response.cost)
            if cache and how == CONSUMED:  # never an answer the caller stopped reading
                self.cache.set(key, response.model_dump(mode="json"))
            self._record_chat("chat.stream", providers[0], response, key, who, messages)
            return response

        def failed(error: errors.LLMError, attempts: int, answer: StreamedAnswer | None) -> None:
            # Tokens that arrived before a stream broke off were generated, and billed.
            partial = ChatResponse(**self._answer(answer.fields(), messages, params, reservation)) if answer else None
            self.budgets.settle(reservation, partial.cost if partial else None)
            self._record_failure("chat.stream", providers[0], model, error, started, attempts, key, who, partial)

        return ChatStream(open_stream, requested_model=model, started=started, on_finish=finished, on_error=failed)

    def generate_embedding(
        self,
        text: str | list[str],
        model: str = DEFAULT_EMBEDDING_MODEL,
        *,
        provider: str | None = None,
        cache: bool = True,
        user: Any = None,
        feature: str = "",
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> EmbeddingResponse:
        """Embed one text or a list of texts (split into requests within the provider's limits)."""
        who = _attribution(user, feature, tags, metadata)
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise errors.BadRequestError("generate_embedding needs at least one text", model=model)
        started = time.perf_counter()
        local = model.startswith("local/") or provider == LOCAL
        route = [] if local else self._route(model, provider)
        provider_name = LOCAL if local else route[0].name
        keys = [
            cache_key({"kind": "embedding", "provider": provider_name, "model": model, "text": t, **params})
            for t in texts
        ]
        found = self.cache.get_many(keys) if cache else {}
        missing = [i for i, k in enumerate(keys) if k not in found]
        vectors: dict[int, list[float]] = {
            i: found[keys[i]]["embedding"] for i in range(len(texts)) if keys[i] in found
        }
        usage = Usage()
        requests = 0
        attempts = 0
        served_model = model
        breakdown = None
        try:
            if missing:
                todo = [texts[i] for i in missing]
                if local:
                    batch = self._embeddings.local(model, todo)
                else:
                    batch, breakdown = self._embed_remote(route, model, todo, params, who)
                    attempts = batch.attempts
                    served_model = batch.model or model
                for i, vector in zip(missing, batch.vectors, strict=True):
                    vectors[i] = vector
                usage, requests = batch.usage, batch.requests
                if cache:
                    self.cache.set_many({keys[i]: {"embedding": vectors[i]} for i in missing})
        except errors.LLMError as error:
            self._record_failure("embeddings", route[0] if route else None, model, error, started, attempts, "", who)
            raise
        self.cache.count(hit=not missing)
        cost: Decimal | None
        if local or not missing:
            cost = Decimal(0)
        else:
            cost = breakdown.total if breakdown else None
        price_id = breakdown.pricing.price_id if breakdown else None
        response = EmbeddingResponse(
            embeddings=[vectors[i] for i in range(len(texts))],
            model=served_model,
            provider=provider_name,
            usage=usage,
            cost=cost,
            cached=not missing,
            latency_ms=_elapsed_ms(started),
            requests=requests,
            price_id=price_id,
            cost_breakdown=breakdown.lines() if breakdown and missing else None,
        )
        self._emit(
            CallRecord.of_response(
                response,
                endpoint="embeddings",
                requested_model=model,
                status=SUCCESS,
                attempts=attempts,
                key_fingerprint=route[0].key_fingerprint if route else "",
                **who,
            )
        )
        return response

    def _embed_remote(
        self, route: list[Provider], model: str, texts: list[str], params: dict, who: Mapping[str, Any]
    ) -> tuple[BatchedEmbeddings, CostBreakdown | None]:
        """Embed ``texts`` in requests within the provider's limits, held against the budgets."""
        reservation = self.budgets.reserve(
            user_id=who["user_id"],
            feature=who["feature"],
            estimate=lambda: calculate_embedding_cost(
                model,
                sum(self.tokenizer.count_tokens(t, model) for t in texts),
                self.models_cache,
                provider=route[0].name,
            ),
        )
        breakdown = None
        try:
            batch = self._embeddings.remote(
                lambda chunk: self._send(
                    route, model, lambda p, name: p.client.embeddings.create(model=name, input=chunk, **params)
                ),
                model,
                texts,
            )
            breakdown = self._price(route[0].name, batch.model or model, model, batch.usage)
        finally:
            self.budgets.settle(reservation, breakdown.total if breakdown else None)
        return batch, breakdown

    def list_models(self, provider: str | None = None) -> list[str]:
        """The model ids a provider serves (``GET /models``), with the client's retries."""
        name = provider or self.primary_provider
        if name is None:
            raise errors.NoProviderConfigured()
        if name not in self.providers:
            raise errors.ConfigurationError(f"Provider {name!r} is not configured")
        (page, _), _ = self._send([self.providers[name]], "", lambda p, _: p.client.models.list())
        return sorted(model.id for model in page)

    def estimate_cost(
        self, model: str, input_tokens: int, output_tokens: int, *, provider: str | None = None
    ) -> Decimal | None:
        """The price of a call of this size, before making it (``None``: price unknown)."""
        provider = provider or self.primary_provider
        name = self.providers[provider].model_name(model) if provider in self.providers else model
        return calculate_chat_cost(name, input_tokens, output_tokens, self.models_cache, provider=provider)

    def count_tokens(self, messages: list[dict[str, Any]], model: str = DEFAULT_CHAT_MODEL) -> int:
        return self.tokenizer.count_messages_tokens(messages, model)

    def get_usage_stats(
        self,
        *,
        days: int = 30,
        start: date | None = None,
        end: date | None = None,
        user: Any = None,
        feature: str | None = None,
        model: str | None = None,
        provider: str | None = None,
    ) -> UsageStats:
        """Usage recorded in the database (every client and process) over a window of days."""
        for recorder in self.recorders:
            if hasattr(recorder, "flush"):
                recorder.flush()
        return usage_stats(days=days, start=start, end=end, user=user, feature=feature, model=model, provider=provider)

    def session_stats(self) -> UsageStats:
        """Usage of this client object since it was made (no database involved)."""
        return self.tally.stats()

    def get_client_info(self) -> dict[str, Any]:
        """What this client is configured with: never a key, only its fingerprint."""
        return {
            "providers": [
                {"name": p.name, "base_url": p.base_url, "key_fingerprint": p.key_fingerprint, "timeout": p.timeout}
                for p in self.providers.values()
            ],
            "primary_provider": self.primary_provider,
            "fallback_order": list(self.providers),
            "retry": {"max_attempts": self.retry.max_attempts, "total_timeout": self.retry.total_timeout},
            "cache": self.cache.get_cache_info().model_dump(),
            "local_embeddings": True,
        }

    def close(self) -> None:
        for p in self.providers.values():
            p.close()

    # -- routing, retries and fallback -----------------------------------------------------

    def _route(self, model: str, provider: str | None) -> list[Provider]:
        """The providers to try for ``model``, the chosen or primary one first (worked out once per name)."""
        route = self._routes.get((model, provider))
        if route is None:
            route = self._find_route(model, provider)
            if len(self._routes) < ROUTES_REMEMBERED:  # model names come from callers: bounded
                self._routes[(model, provider)] = route
        return route

    def _find_route(self, model: str, provider: str | None) -> list[Provider]:
        if not self.providers:
            raise errors.NoProviderConfigured()
        first: Provider | None
        if provider is not None:
            if provider not in self.providers:
                raise errors.ConfigurationError(
                    f"Provider {provider!r} is not configured; configured: {', '.join(self.providers)}"
                )
            first = self.providers[provider]
        else:
            first = next((p for p in self.providers.values() if p.serves(model)), None)
            if first is None:
                raise errors.ConfigurationError(f"No configured provider serves {model!r}", model=model)
        return [first, *(p for p in self.providers.values() if p is not first and p.serves(model))]

    def _send(
        self, providers: list[Provider], model: str, request: Callable[[Provider, str], T]
    ) -> tuple[tuple[T, Provider], int]:
        return send(providers, model, request, policy=self.retry, secrets=self._secrets)

    def _secrets(self) -> list[str]:
        return [p.api_key for p in self.providers.values() if p.api_key]

    # -- pricing, caching and recording ----------------------------------------------------

    def _chat_cache_key(self, provider: Provider, model: str, messages: list, params: dict) -> str:
        answer_params = {k: params[k] for k in _ANSWER_PARAMS if k in params}
        unknown = {k: v for k, v in params.items() if k not in answer_params and k not in ("timeout", "extra_headers")}
        return cache_key(
            {
                "kind": "chat",
                "provider": provider.name,
                "model": provider.model_name(model),
                "messages": messages,
                **answer_params,
                **unknown,
            }
        )

    def _reserve(self, provider: Provider, model: str, messages: list, params: dict, who: Mapping[str, Any]):
        """Hold the call's estimated cost against the budgets that apply (raises BudgetExceeded)."""

        def size() -> Usage:
            prompt = self.tokenizer.count_messages_tokens(messages, model, tools=params.get("tools"))
            output = params.get("max_completion_tokens") or params.get("max_tokens") or OUTPUT_TOKENS_ESTIMATE
            return Usage(prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output)

        def estimate() -> Decimal | None:
            usage = size()
            return calculate_chat_cost(
                provider.model_name(model),
                usage.prompt_tokens,
                usage.completion_tokens,
                self.models_cache,
                provider=provider.name,
            )

        def conservative_estimate() -> Decimal:
            pricing = conservative_pricing(self.models_cache, provider.model_name(model), provider.name)
            return calculate_cost(pricing, size()).total if pricing else Decimal(0)

        return self.budgets.reserve(
            user_id=who["user_id"],
            feature=who["feature"],
            estimate=estimate,
            conservative_estimate=conservative_estimate,
        )

    def _price(self, provider: str, served_model: str, requested_model: str, usage: Usage) -> CostBreakdown | None:
        pricing = self.models_cache.get(served_model, provider) or self.models_cache.get(requested_model, provider)
        if pricing is None:
            logger.warning("No price known for model %r (provider %s): cost not computed", served_model, provider)
            return None
        return calculate_cost(pricing, usage)

    def _answer(
        self, fields: dict[str, Any], messages: list, params: dict, reservation: Reservation | None
    ) -> dict[str, Any]:
        """An answer's ``ChatResponse`` fields completed: its usage, then its cost."""
        fields = self._with_usage(fields, messages, params)
        return fields | self._cost_fields(fields, reservation)

    def _cost_fields(self, answer: Mapping[str, Any], reservation: Reservation | None) -> dict[str, Any]:
        """The cost of an answer. A model without a price costs None (unknown), unless its budget
        reservation was estimated (``LLM_UNPRICED=estimate``): then the same conservative price, flagged."""
        provider, usage = answer["provider"], answer["usage"]
        breakdown = self._price(provider, answer["model"], answer["requested_model"], usage)
        estimated = False
        if breakdown is None and reservation is not None and reservation.price_estimated:
            pricing = conservative_pricing(self.models_cache, answer["requested_model"], provider)
            breakdown, estimated = (calculate_cost(pricing, usage), True) if pricing else (None, False)
        if breakdown is None:
            return {}
        return {
            "cost": breakdown.total,
            "price_id": breakdown.pricing.price_id,
            "cost_breakdown": breakdown.lines(),
            "price_estimated": estimated,
        }

    def _with_usage(self, answer: dict[str, Any], messages: list, params: dict) -> dict[str, Any]:
        """``answer``'s fields, with its tokens counted locally when the provider reported none.

        An abandoned stream never gets the usage chunk, and many OpenAI-compatible servers
        ignore ``stream_options``: such a call cost tokens all the same, so it is priced from
        a local count and flagged, never recorded as free.
        """
        usage = answer["usage"]
        if usage.total_tokens or not (answer["content"] or answer["tool_calls"]):
            # What only the request shows (input images, 1-hour cache writes) completes the usage.
            completed = usage_with_request(usage, messages, params)
            return answer if completed is usage else answer | {"usage": completed}
        model = answer["requested_model"]
        prompt = self.tokenizer.count_messages_tokens(messages, model, tools=params.get("tools"))
        generated = [answer["content"]] + [
            call["function"]["name"] + call["function"]["arguments"] for call in answer["tool_calls"] or ()
        ]
        completion = sum(self.tokenizer.count_tokens(text, model) for text in generated if text)
        usage = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
        return answer | {"usage": usage_with_request(usage, messages, params), "usage_estimated": True}

    def _record_chat(
        self,
        endpoint: str,
        provider: Provider,
        response: ChatResponse,
        key: str,
        who: Mapping[str, Any],
        messages: list,
    ) -> None:
        self._emit(
            CallRecord.of_response(
                response,
                endpoint=endpoint,
                status=SUCCESS,
                cache_key=key,
                # The provider that answered, which is not the first one tried after a fallback.
                key_fingerprint=self.providers.get(response.provider, provider).key_fingerprint,
                **who,
                prompt=messages,
                response_text=response.content,
            )
        )

    def _record_failure(
        self,
        endpoint: str,
        provider: Provider | None,
        model: str,
        error: errors.LLMError,
        started: float,
        attempts: int,
        key: str,
        who: Mapping[str, Any],
        partial: ChatResponse | None = None,
    ) -> None:
        """Record a failed or refused call; ``partial``: what a broken-off stream delivered (and cost)."""
        refused = isinstance(error, errors.Refused)
        # A refusal (a budget) sent nothing: it cost nothing and is not a provider error.
        spent: dict[str, Any] = {"cost": Decimal(0) if refused else None}
        if partial is not None:
            spent = {
                name: getattr(partial, name)
                for name in ("usage", "cost", "price_id", "cost_breakdown", "usage_estimated", "price_estimated")
            } | {"response_text": partial.content, "tool_calls": partial.tool_calls}
        self._emit(
            CallRecord(
                **spent,
                endpoint=endpoint,
                provider=error.provider or (provider.name if provider else ""),
                requested_model=model,
                model=error.model or model,
                status=REFUSED if refused else ERROR,
                latency_ms=_elapsed_ms(started),
                attempts=getattr(error, "attempts", attempts),
                cache_key=key,
                error_type=type(error).__name__,
                error_message=str(error),
                key_fingerprint=provider.key_fingerprint if provider else "",
                request_id=error.request_id,
                **who,
            )
        )

    def _emit(self, record: CallRecord) -> None:
        for recorder in self.recorders:
            try:
                recorder.record(record)
            except Exception:  # accounting must never break the call it accounts for
                logger.exception("Recorder %r failed", recorder)


def _attribution(
    user: Any, feature: str, tags: Iterable[str] | None, metadata: Mapping[str, Any] | None
) -> Mapping[str, Any]:
    """The call's ``CallRecord`` attribution fields: the context's, with the call's own arguments applied."""
    context = current_context()
    if user is not None or feature or tags or metadata:
        context = context.narrowed(user=user, feature=feature or None, tags=tags, metadata=metadata)
    return context.record_fields


def _cache_hit(payload: dict[str, Any], started: float) -> ChatResponse:
    """A cached answer as this call returns it: nothing charged, ``saved_cost`` what it would have cost."""
    # Validated once with the hit's own fields (a validation and then a copy cost twice as much).
    return ChatResponse.model_validate(
        payload
        | {
            "cached": True,
            "saved_cost": payload.get("cost"),
            "cost": Decimal(0),
            "provider_cost": None,
            "latency_ms": _elapsed_ms(started),
            "attempts": 0,
            "time_to_first_token_ms": None,
            "cost_breakdown": None,  # nothing was charged: saved_cost says what it would have been
        }
    )


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _sdk_messages(messages: list[dict[str, Any]]) -> list[ChatCompletionMessageParam]:
    # Messages go to the provider as the caller wrote them (it validates them): the SDK's
    # per-role TypedDicts describe the same JSON.
    return cast(list[ChatCompletionMessageParam], messages)


_default_client: LLMClient | None = None
_default_lock = threading.Lock()


def default_client() -> LLMClient:
    """The process-wide client configured from the environment (shared: it is thread-safe)."""
    global _default_client
    if _default_client is None:
        with _default_lock:
            if _default_client is None:
                _default_client = LLMClient()
    return _default_client
