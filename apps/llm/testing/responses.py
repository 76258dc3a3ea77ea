"""What the simulator receives and sends: scripted responses, received requests, error bodies.

Kept apart from the server so a test can build the responses it scripts, and read the requests
it gets back, without caring how they travel. Stdlib only, like the rest of the simulator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HeaderValue",
    "ReceivedRequest",
    "SSEItem",
    "SimResponse",
    "invalid_json",
    "missing_parameter",
    "not_found",
    "rate_limited",
]

_ERROR_TYPES = {429: "requests"}
_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided: sk-****. You can find your API key at "
    "https://platform.openai.com/account/api-keys.",
    403: "You are not allowed to sample from this model.",
    404: "The requested resource does not exist.",
    429: "Rate limit reached for requests. Please try again in 20ms.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}

HeaderValue = str | Sequence[str]
SSEItem = Mapping[str, Any] | str | bytes


@dataclass(frozen=True)
class SimResponse:
    """One scripted HTTP response.

    Give at most one body: ``json`` (serialised), ``sse`` (a stream) or ``body`` (raw bytes/text).
    ``sse`` is either the raw text of a stream (sent byte-for-byte, one event per chunk) or a list
    of events: a mapping becomes ``data: {json}``, a str ``data: {str}`` (so ``"[DONE]"`` works),
    bytes are sent verbatim (comments, ``event:`` lines). ``delay`` (seconds) overrides the
    simulator's ``latency`` for this response; ``None`` means "use the simulator's".
    """

    status: int = 200
    json: Any = None
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    sse: str | Sequence[SSEItem] | None = None
    body: str | bytes | None = None
    delay: float | None = None

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.json, self.sse, self.body))
        if given > 1:
            raise ValueError("SimResponse takes only one of json=, sse= and body=")

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
        headers: Mapping[str, HeaderValue] | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
    ) -> SimResponse:
        """An error in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}``.

        ``type`` and ``code`` default to what OpenAI sends for the status (``invalid_api_key``
        for 401, ``rate_limit_exceeded`` for 429, ``server_error`` for 5xx). ``retry_after``
        (seconds) sets both ``retry-after`` and the SDK's preferred ``retry-after-ms``.
        """
        if type is None:
            type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        if code is None:
            code = _ERROR_CODES.get(status)
        all_headers: dict[str, HeaderValue] = dict(headers or {})
        if retry_after is not None:
            all_headers.setdefault("retry-after", str(max(1, math.ceil(retry_after))))
            all_headers.setdefault("retry-after-ms", str(round(retry_after * 1000)))
        body = {
            "error": {
                "message": message if message is not None else _DEFAULT_MESSAGES.get(status, "Error."),
                "type": type,
                "param": param,
                "code": code,
            }
        }
        return cls(status=status, json=body, headers=all_headers, delay=delay)


@dataclass(frozen=True)
class ReceivedRequest:
    """A request as the simulator received it. Header names are lower-case."""

    method: str
    path: str
    # Kept out of repr so an assertion message or log line never prints an API key.
    headers: Mapping[str, str] = field(repr=False)
    json: Any
    route: str


# -- the errors the simulator answers with on its own, worded as OpenAI words them ------------------


def not_found(method: str, path: str) -> SimResponse:
    """OpenAI's 404 for an unknown route, so a wrong base URL fails as it would in production."""
    return SimResponse.error(404, f"Invalid URL ({method} {path})")


def missing_parameter(param: str) -> SimResponse:
    """OpenAI's 400 for a missing required parameter, which the SDK maps to BadRequestError."""
    return SimResponse.error(
        400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def invalid_json() -> SimResponse:
    """OpenAI's 400 for a body that is not a JSON object."""
    return SimResponse.error(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
    )


def rate_limited(wait_ms: int) -> SimResponse:
    """OpenAI's 429, with the wait both in the message and in the headers the SDK honours."""
    return SimResponse.error(
        429,
        "Rate limit reached for requests in organization org-simulator on requests per min (RPM): "
        f"Limit 500, Used 500, Requested 1. Please try again in {wait_ms}ms. "
        "Visit https://platform.openai.com/account/rate-limits to learn more.",
        retry_after=wait_ms / 1000,
    )
