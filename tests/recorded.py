"""Typed access to the recorded API traffic in ``tests/fixtures/recorded`` (see its SOURCES.md).

Cassette files (``*-cassettes.json``) hold real HTTP interactions; ``to_sim_response`` turns one
into a ``SimResponse`` so a test can make the simulator replay it to the real SDK::

    record = chat_completions(provider="openrouter", status=200, streaming=False)[0]
    sim.enqueue(CHAT, to_sim_response(record))

Loaded data is cached and shared between tests: treat it as read-only.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from apps.llm.testing.simulator import SimResponse

FIXTURES = Path(__file__).parent / "fixtures" / "recorded"
ERROR_BODIES = "api-error-bodies-from-github-issues.json"

# Headers that describe the recorded connection or encoding, not the response: the simulator
# frames the body itself, and the collector already decompressed gzip bodies.
_DROPPED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-encoding",
        "content-length",
    }
)


@dataclass(frozen=True)
class Record:
    """One recorded HTTP interaction from a cassette file."""

    file: str
    source_file: str
    interaction_index: int
    method: str
    uri: str
    request_body: Any
    status: int
    headers: dict[str, list[str]]
    body_kind: str  # "json" | "sse_text" | "text"
    body: Any

    @property
    def path(self) -> str:
        return urlsplit(self.uri).path

    @property
    def provider(self) -> str:
        return "openrouter" if "openrouter.ai" in urlsplit(self.uri).netloc else "openai"

    @property
    def route(self) -> str:
        """The path after ``/v1/`` (or ``/api/v1/``), e.g. ``chat/completions``."""
        path = self.path
        for prefix in ("/api/v1/", "/v1/"):
            if path.startswith(prefix):
                return path[len(prefix) :]
        return path.lstrip("/")

    @property
    def streaming(self) -> bool:
        return self.body_kind == "sse_text"

    def header(self, name: str) -> str | None:
        """The first value of a response header, matched case-insensitively."""
        name = name.lower()
        for key, values in self.headers.items():
            if key.lower() == name and values:
                return values[0]
        return None


@dataclass(frozen=True)
class ErrorBody:
    """An API error body quoted in a public GitHub issue (no recorded headers)."""

    provider: str
    status: int
    kind: str
    source_url: str
    body: Any  # None when the issue showed only the message text
    headers: dict[str, str]


@functools.cache
def load_records(name: str) -> list[Record]:
    """All interactions of one cassette file (``name`` with or without ``.json``)."""
    filename = name if name.endswith(".json") else f"{name}.json"
    data = json.loads((FIXTURES / filename).read_text(encoding="utf-8"))
    return [_record(filename, raw) for raw in data["records"]]


def cassette_files() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*-cassettes.json"))


def find_records(
    *,
    route: str | None = None,
    provider: str | None = None,
    status: int | None = None,
    streaming: bool | None = None,
    file: str | None = None,
) -> list[Record]:
    """Records from every cassette file that match all the given filters."""
    files = [file if file.endswith(".json") else f"{file}.json"] if file else cassette_files()
    return [
        r
        for f in files
        for r in load_records(f)
        if (route is None or r.route == route)
        and (provider is None or r.provider == provider)
        and (status is None or r.status == status)
        and (streaming is None or r.streaming == streaming)
    ]


def chat_completions(
    *, provider: str | None = None, status: int | None = None, streaming: bool | None = None, file: str | None = None
) -> list[Record]:
    return find_records(route="chat/completions", provider=provider, status=status, streaming=streaming, file=file)


def embeddings(*, provider: str | None = None, status: int | None = None, file: str | None = None) -> list[Record]:
    return find_records(route="embeddings", provider=provider, status=status, file=file)


@functools.cache
def error_bodies() -> list[ErrorBody]:
    data = json.loads((FIXTURES / ERROR_BODIES).read_text(encoding="utf-8"))
    return [
        ErrorBody(
            provider=raw["provider"],
            status=raw["http_status"],
            kind=raw["error_kind"],
            source_url=raw["source_url"],
            body=raw.get("body_json"),
            headers=dict(raw.get("headers") or {}),
        )
        for raw in data["records"]
    ]


def load_fixture(name: str) -> Any:
    """A fixture file parsed as JSON (e.g. an OpenRouter model catalog)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def to_sim_response(item: Record | ErrorBody, *, delay: float | None = None) -> SimResponse:
    """A ``SimResponse`` that replays the recorded status, headers and body."""
    if isinstance(item, ErrorBody):
        if item.body is None:
            raise ValueError(f"{item.source_url} quotes no body to replay")
        return SimResponse(status=item.status, json=copy.deepcopy(item.body), headers=dict(item.headers), delay=delay)
    headers = {k: list(v) for k, v in item.headers.items() if k.lower() not in _DROPPED_HEADERS}
    if item.body_kind == "sse_text":
        return SimResponse(status=item.status, sse=item.body, headers=headers, delay=delay)
    if item.body_kind == "json":
        return SimResponse(status=item.status, json=copy.deepcopy(item.body), headers=headers, delay=delay)
    return SimResponse(status=item.status, body=item.body or "", headers=headers, delay=delay)


def _record(filename: str, raw: dict[str, Any]) -> Record:
    request, response = raw["request"], raw["response"]
    headers = {k: v if isinstance(v, list) else [v] for k, v in (response.get("headers") or {}).items()}
    return Record(
        file=filename,
        source_file=raw["source_file"],
        interaction_index=raw["interaction_index"],
        method=request["method"].upper(),
        uri=request["uri"],
        request_body=request.get("body"),
        status=response["status"],
        headers=headers,
        body_kind=response["body_kind"],
        body=response.get("body"),
    )
