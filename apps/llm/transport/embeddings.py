"""Splitting embedding inputs into requests within a provider's limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apps.llm.errors import ContextLengthExceeded
from apps.llm.transport.responses import usage_from_sdk
from apps.llm.types import Usage

#: OpenAI's documented limits for /v1/embeddings (OpenRouter passes them through).
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000
MAX_TOKENS_PER_INPUT = 8192


@dataclass
class BatchedEmbeddings:
    """The vectors of one call's texts, in input order, however many provider requests they took."""

    vectors: list[list[float]]
    usage: Usage = field(default_factory=Usage)
    requests: int = 0
    attempts: int = 0
    model: str = ""


@dataclass(frozen=True)
class RequestLimits:
    max_inputs: int = MAX_INPUTS_PER_REQUEST
    max_tokens: int = MAX_TOKENS_PER_REQUEST
    max_tokens_per_input: int = MAX_TOKENS_PER_INPUT


class EmbeddingBatcher:
    def __init__(self, tokenizer: Any, limits: RequestLimits = RequestLimits()):
        self.tokenizer = tokenizer
        self.limits = limits

    def plan(self, model: str, texts: list[str]) -> list[list[int]]:
        """Indexes of ``texts`` grouped into requests; refuses an input over the per-input limit."""
        limits = self.limits
        groups: list[list[int]] = []
        current: list[int] = []
        current_tokens = 0
        for index, text in enumerate(texts):
            tokens = self.tokenizer.count_tokens(text, model)
            if tokens > limits.max_tokens_per_input:
                raise ContextLengthExceeded(
                    f"Input {index} has {tokens} tokens; {model} takes at most {limits.max_tokens_per_input} per input",
                    model=model,
                )
            if current and (len(current) == limits.max_inputs or current_tokens + tokens > limits.max_tokens):
                groups.append(current)
                current, current_tokens = [], 0
            current.append(index)
            current_tokens += tokens
        if current:
            groups.append(current)
        return groups

    def remote(self, send: Callable[[list[str]], Any], model: str, texts: list[str]) -> BatchedEmbeddings:
        """Embed ``texts`` with one ``send(chunk)`` per planned request (the client's retrying send)."""
        batch = BatchedEmbeddings(vectors=[[] for _ in texts])
        prompt_tokens = 0
        for group in self.plan(model, texts):
            (result, _provider), attempts = send([texts[i] for i in group])
            batch.requests += 1
            batch.attempts += attempts
            batch.model = result.model or batch.model
            for item in sorted(result.data, key=lambda d: d.index):
                batch.vectors[group[item.index]] = list(item.embedding)
            prompt_tokens += usage_from_sdk(result.usage).prompt_tokens
        batch.usage = Usage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens)
        return batch

    def local(self, model: str, texts: list[str]) -> BatchedEmbeddings:
        from apps.llm.transport.local_embeddings import get_local_embedder

        result = get_local_embedder(model).embed(texts)
        tokens = sum(result.token_counts)
        return BatchedEmbeddings(
            vectors=result.vectors, usage=Usage(prompt_tokens=tokens, total_tokens=tokens), requests=1, model=model
        )
