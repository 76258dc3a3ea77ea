"""Answers to questions from the knowledge base, with the chunks they cite."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from apps.knowledge.conf import knowledge_settings
from apps.knowledge.search import SearchHit, retrieve
from apps.llm.client import LLMClient, default_client
from apps.llm.types import ChatResponse

SYSTEM_PROMPT = (
    "Answer the question using only the numbered context passages. Cite the passages you use "
    "as [1], [2], ... right after the statement they support. If the context does not contain "
    "the answer, say that you do not know."
)
#: Tokens kept free for the answer when fitting context into the model's window.
ANSWER_TOKENS = 1024
DEFAULT_CONTEXT_WINDOW = 16_000


@dataclass
class Answer:
    text: str
    #: The passages the answer cites, in citation order (all retrieved ones if it cites none).
    citations: list[SearchHit]
    #: Everything retrieved and given to the model.
    context: list[SearchHit]
    #: Embedding of the question plus the chat completion, in USD (None if a price is unknown).
    cost: Decimal | None
    response: ChatResponse


def build_messages(
    question: str, hits: list[SearchHit], *, model: str, client: LLMClient, context_window: int
) -> tuple[list[dict[str, str]], list[SearchHit]]:
    """The prompt with as many passages (best first) as fit in the model's context window."""
    budget = context_window - ANSWER_TOKENS
    used: list[SearchHit] = []
    passages: list[str] = []
    for hit in hits:
        passage = f"[{len(used) + 1}] ({hit.document_title})\n{hit.text}"
        trial = _messages(question, [*passages, passage])
        if client.count_tokens(trial, model) > budget:
            break
        passages.append(passage)
        used.append(hit)
    return _messages(question, passages), used


def _messages(question: str, passages: list[str]) -> list[dict[str, str]]:
    context = "\n\n".join(passages) or "(no passages found)"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"},
    ]


def answer(
    question: str,
    *,
    k: int = 8,
    model: str | None = None,
    client: LLMClient | None = None,
    user: Any = None,
    **search_filters: Any,
) -> Answer:
    """Retrieve, fit the prompt to the context window, ask the chat model, cite."""
    client = client or default_client()
    model = model or knowledge_settings().answer_model
    retrieved = retrieve(question, k=k, client=client, user=user, **search_filters)
    hits = retrieved.hits
    pricing = client.models_cache.get(model)
    window = pricing.context_length if pricing and pricing.context_length else DEFAULT_CONTEXT_WINDOW
    messages, context = build_messages(question, hits, model=model, client=client, context_window=window)
    response = client.chat_completion(
        messages, model, feature="knowledge.answer", user=user, max_tokens=ANSWER_TOKENS, temperature=0
    )
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", response.content)]
    citations = [context[n - 1] for n in dict.fromkeys(cited) if 1 <= n <= len(context)] or context
    cost = None if response.cost is None or retrieved.cost is None else retrieved.cost + response.cost
    return Answer(text=response.content, citations=citations, context=context, cost=cost, response=response)
