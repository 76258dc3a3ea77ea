"""Route names and the URL prefixes they live under.

One route name serves both prefixes, ``/v1`` (OpenAI) and ``/api/v1`` (OpenRouter), so a test
scripts ``CHAT`` once whichever base URL its client uses.
"""

from __future__ import annotations

__all__ = ["CHAT", "EMBEDDINGS", "MODELS", "normalise_route", "split_route"]

# Route names: the path after the /v1/ or /api/v1/ prefix.
CHAT = "chat/completions"
EMBEDDINGS = "embeddings"
MODELS = "models"

_PREFIXES = (("/api/v1/", "openrouter"), ("/v1/", "openai"))


def split_route(path: str) -> tuple[str, str | None]:
    """The route of a request path and its flavour ("openai", "openrouter", or None outside the API)."""
    for prefix, flavour in _PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :].strip("/"), flavour
    # Outside the API prefixes the path keeps its leading slash, so it never matches a scripted
    # route: a client with a wrong base URL gets 404s instead of the test's scripted answers.
    return path, None


def normalise_route(route: str) -> str:
    """A route as a test may spell it (with or without a prefix or slashes), as the server keys it."""
    route = route.strip("/")
    for prefix in ("api/v1/", "v1/"):
        if route.startswith(prefix):
            return route[len(prefix) :].strip("/")
    return route
