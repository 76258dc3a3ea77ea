"""Typed errors of the LLM client, with one base class, and their mapping from the SDK.

Every message is scrubbed of API keys before it is stored in an exception: exceptions end up
in logs, tracebacks, the request log and error trackers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypedDict

import openai

# OpenAI- and OpenRouter-style keys, and bearer tokens echoed back by proxies.
_KEY_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|Bearer\s+[A-Za-z0-9_\-.=*]{6,})")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and anything shaped like an API key replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)


class LLMError(Exception):
    """Base of every error the client raises."""

    #: Whether trying the same request again may succeed.
    retryable: bool = False
    #: Tries made before giving up (set by the client).
    attempts: int = 0

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.request_id = request_id

    def __str__(self) -> str:
        where = ", ".join(
            f"{k}={v}"
            for k, v in (("provider", self.provider), ("model", self.model), ("status", self.status_code))
            if v
        )
        return f"{self.message} ({where})" if where else self.message


class ConfigurationError(LLMError):
    """The client is not set up to make this call."""


class NoProviderConfigured(ConfigurationError):
    def __init__(self, message: str | None = None):
        super().__init__(
            message
            or "No LLM provider is configured: set OPENROUTER_API_KEY, OPENAI_API_KEY or LLM_BASE_URL "
            "(any OpenAI-compatible server)."
        )


class Refused(LLMError):
    """The platform refused the call before anything was sent (a budget, a policy).

    Recorded with status ``refused``: a decision, not a failure of the provider.
    """


class BudgetExceeded(Refused):
    """Sending the call would take a budget past its hard limit; nothing was sent."""

    def __init__(self, message: str, *, budget: str, limit, spent, estimate, **kwargs):
        super().__init__(message, **kwargs)
        self.budget = budget
        self.limit = limit
        self.spent = spent
        self.estimate = estimate


class UnpricedModel(Refused):
    """A hard budget applies and the model has no price (``LLM_UNPRICED=refuse``); nothing was sent."""


class AccountingUnavailable(Refused):
    """The database that holds the budgets is unreachable and ``LLM_BUDGETS_WHEN_DB_DOWN=deny``."""


class InvalidResponse(LLMError):
    """The provider answered with something that is not a valid completion (bad JSON, no choices,
    impossible token counts). Retried: a garbled body is usually a passing fault."""

    retryable = True


class InvalidUsage(InvalidResponse):
    """The answer arrived but its token counts cannot be read (negative, not numbers).

    Not retried: the answer was generated and billed, and a second one would be billed again.
    """

    retryable = False


class AuthenticationError(LLMError):
    """The key was refused (401) or lacks permission (403)."""


class QuotaExceeded(LLMError):
    """The account is out of credits or quota (OpenRouter 402, OpenAI insufficient_quota)."""


class RateLimitError(LLMError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        #: Seconds the provider asked us to wait, from Retry-After / retry-after-ms.
        self.retry_after = retry_after


class LLMTimeoutError(LLMError):
    retryable = True


class ProviderConnectionError(LLMError):
    retryable = True


class ServerError(LLMError):
    """The provider failed (5xx) or sent something unusable."""

    retryable = True


class BadRequestError(LLMError):
    """The request is invalid (400, 404, 422): sending it again cannot help."""


class ModelNotFound(BadRequestError):
    pass


class ContextLengthExceeded(BadRequestError):
    pass


class ContentFiltered(BadRequestError):
    """The provider's moderation refused the prompt or cut the answer."""


def _retry_after(response: Any, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """Seconds the provider asks to wait: ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)  # RFC 9110: "Wed, 21 Oct 2026 07:28:00 GMT"
    except (TypeError, ValueError):
        return None  # neither form: the backoff schedule applies
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now()).total_seconds(), 0.0)


def _error_code(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    return str(error.get("code") or error.get("type") or getattr(exc, "code", "") or "")


class _Context(TypedDict):
    provider: str
    model: str


class _StatusContext(_Context):
    status_code: int
    request_id: str | None


def from_openai(exc: openai.OpenAIError, *, provider: str, model: str, secrets: Iterable[str] = ()) -> LLMError:
    """The typed error for an exception raised by the ``openai`` SDK."""
    context: _Context = {"provider": provider, "model": model}
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeoutError("The request timed out", **context)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderConnectionError(redact(f"Could not connect: {exc}", secrets), **context)
    if not isinstance(exc, openai.APIStatusError):
        message = redact(getattr(exc, "message", None) or str(exc), secrets)
        # An error event inside a 200 stream: {"error": {"code": 400, "message": ...}}.
        body = getattr(exc, "body", None)
        code = body.get("code") if isinstance(body, dict) else None
        if isinstance(code, int) and 400 <= code < 500:
            return BadRequestError(message, status_code=code, **context)
        return ServerError(message, **context)

    status = exc.status_code
    message = redact(exc.message, secrets)
    code = _error_code(exc)
    status_context: _StatusContext = {**context, "status_code": status, "request_id": exc.request_id}
    lowered = f"{code} {message}".lower()
    if status in (401, 403):
        return AuthenticationError(message, **status_context)
    if status == 402 or "insufficient_quota" in lowered:
        return QuotaExceeded(message, **status_context)
    if status == 429:
        return RateLimitError(message, retry_after=_retry_after(exc.response), **status_context)
    if status == 408:
        return LLMTimeoutError(message, **status_context)
    if status >= 500:
        return ServerError(message, **status_context)
    if "context_length" in lowered or "maximum context length" in lowered or "too many tokens" in lowered:
        return ContextLengthExceeded(message, **status_context)
    if "content_filter" in lowered or "content_policy" in lowered or "moderation" in lowered:
        return ContentFiltered(message, **status_context)
    if status == 404 or code == "model_not_found":
        return ModelNotFound(message, **status_context)
    return BadRequestError(message, **status_context)
