"""The embedding models the knowledge base can store, with their vector sizes and input limits.

A chunk remembers the model that embedded it; search compares a query only with chunks of
the same model, through that model's own HNSW index (see ``Chunk.Meta.indexes``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbeddingModel:
    name: str
    dimensions: int
    max_input_tokens: int
    #: Short and stable: names the model's HNSW index (Django allows 30 characters).
    slug: str

    @property
    def is_local(self) -> bool:
        return self.name.startswith("local/")

    @property
    def index_name(self) -> str:
        return f"knowledge_hnsw_{self.slug}"


LOCAL_MINILM = EmbeddingModel("local/all-minilm-l6-v2", 384, 256, "minilm")
OPENAI_SMALL = EmbeddingModel("text-embedding-3-small", 1536, 8192, "te3_small")
OPENAI_ADA = EmbeddingModel("text-embedding-ada-002", 1536, 8192, "ada_002")

EMBEDDING_MODELS: dict[str, EmbeddingModel] = {m.name: m for m in (LOCAL_MINILM, OPENAI_SMALL, OPENAI_ADA)}


class UnknownEmbeddingModel(ValueError):
    pass


def embedding_model(name: str) -> EmbeddingModel:
    """The model for ``name``; OpenRouter's "openai/..." names are the same vectors as OpenAI's."""
    key = name.removeprefix("openai/")
    try:
        return EMBEDDING_MODELS[key]
    except KeyError:
        raise UnknownEmbeddingModel(
            f"Embedding model {name!r} is not supported by the knowledge base; use one of: "
            + ", ".join(EMBEDDING_MODELS)
        ) from None
