"""The bodies of the simulator's unscripted ``POST embeddings`` answers.

Vectors are derived from a hash of the text, so the same text always embeds the same way and
tests can check what a caller stored without a real model. Stdlib only.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import sys
from array import array
from collections.abc import Mapping
from typing import Any

from apps.llm.testing.payloads import add_openrouter_cost, estimate_tokens
from apps.llm.testing.responses import SimResponse, missing_parameter

__all__ = ["embeddings"]

_EMBEDDING_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-ada-002": 1536,
    "text-embedding-3-large": 3072,
}
_MAX_DIMENSIONS = 16384


def _embedding_inputs(value: Any) -> list[tuple[str, int]] | None:
    """(text, token count) per input; token arrays are hashed by their repr. None if invalid."""

    def is_tokens(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(t, int) for t in v)

    if isinstance(value, str):
        return [(value, max(1, estimate_tokens(value)))] if value else None
    if is_tokens(value):
        return [(repr(value), len(value))]
    if isinstance(value, list) and value:
        items = []
        for v in value:
            if isinstance(v, str) and v:
                items.append((v, max(1, estimate_tokens(v))))
            elif is_tokens(v):
                items.append((repr(v), len(v)))
            else:
                return None
        return items
    return None


@functools.lru_cache(maxsize=4096)
def _unit_vector(text: str, dim: int) -> bytes:
    """A deterministic pseudo-random unit vector as little-endian float32 bytes (OpenAI's base64 layout)."""
    raw = hashlib.shake_256(f"{dim}:{text}".encode()).digest(dim * 2)
    ints = array("h")
    ints.frombytes(raw)
    norm = math.sqrt(sum(i * i for i in ints)) or 1.0
    vector = array("f", [i / norm for i in ints])
    if sys.byteorder == "big":
        vector.byteswap()
    return vector.tobytes()


def _floats(vector: bytes) -> list[float]:
    values = array("f")
    values.frombytes(vector)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def embeddings(
    body: dict[str, Any],
    flavour: str,
    *,
    catalog: Mapping[str, Mapping[str, Any]],
    default_dim: int = 1536,
) -> SimResponse:
    """The answer to ``POST embeddings``: vectors in the requested encoding, or OpenAI's 400.

    Known OpenAI models get the dimensions the real API gives them, so vectors fit the columns
    made for them; ``default_dim`` is for the others.
    """
    model = body.get("model")
    if not model:
        return missing_parameter("model")
    texts = _embedding_inputs(body.get("input"))
    if texts is None:
        return SimResponse.error(
            400,
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            param="input",
        )
    dim = body.get("dimensions")
    if dim is None:
        dim = _EMBEDDING_DIMS.get(model.rsplit("/", 1)[-1], default_dim)
    if not isinstance(dim, int) or isinstance(dim, bool) or not 0 < dim <= _MAX_DIMENSIONS:
        return SimResponse.error(400, f"Invalid value for 'dimensions': {dim!r}.", param="dimensions")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, (text, n_tokens) in enumerate(texts):
        tokens += n_tokens
        vector = _unit_vector(text, dim)
        embedding: Any = base64.b64encode(vector).decode("ascii") if as_base64 else _floats(vector)
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    usage: dict[str, Any] = {"prompt_tokens": tokens, "total_tokens": tokens}
    result: dict[str, Any] = {"object": "list", "data": data, "model": model, "usage": usage}
    if flavour == "openrouter":
        add_openrouter_cost(usage, catalog, model)
    return SimResponse(json=result)
