from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Cast
from pgvector.django import HnswIndex, VectorField

from apps.knowledge.embedding_models import EMBEDDING_MODELS
from apps.llm.pricing.sheets import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS

#: The text search configuration of the keyword index (stemming and stop words); a query must
#: be parsed with the same one to match (see ``apps.knowledge.search``).
SEARCH_CONFIG = "english"
#: The GIN index over ``Chunk.search_vector``.
SEARCH_INDEX = "knowledge_chunk_fts"


class Document(models.Model):
    """An uploaded file and the state of its way into the vector store."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    title = models.CharField(max_length=255)
    file = models.FileField(upload_to="documents/%Y/%m/")
    #: The file's name as uploaded: an upload of the same name with other content is a new version
    #: of it, which replaces it when ready (``apps.knowledge.versions``).
    source_name = models.CharField(max_length=255, blank=True, default="", db_index=True)
    version = models.PositiveIntegerField(default=1)
    content_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the file: one copy per content.")
    mime_type = models.CharField(max_length=100, blank=True, default="")
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    error_message = models.TextField(blank=True, default="")
    warnings = models.JSONField(default=list, blank=True, help_text="What extraction had to repair.")
    #: Where each page of a PDF starts in the extracted text (page n at index n - 1), so a chunk's
    #: ``start_char`` gives its page; None for the types without pages.
    page_starts = models.JSONField(null=True, blank=True, help_text="PDF: text offset of each page.")
    chunk_count = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0, help_text="Embedded so far, while processing.")
    token_count = models.PositiveIntegerField(default=0)
    embedding_model = models.CharField(max_length=100, blank=True, default="")
    embedding_cost = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, null=True, blank=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="knowledge_documents"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "processing_started_at"], name="knowledge_doc_status")]

    def __str__(self) -> str:
        return self.title

    @property
    def progress(self) -> float:
        return self.chunks_done / self.chunk_count if self.chunk_count else 0.0


def _hnsw_index(model) -> HnswIndex:
    # One partial index per embedding model: pgvector indexes need a fixed dimension, and
    # search must only ever compare vectors of the same model.
    return HnswIndex(
        OpClass(Cast("embedding", VectorField(dimensions=model.dimensions)), name="vector_cosine_ops"),
        name=model.index_name,
        condition=Q(embedding_model=model.name),
        m=16,
        ef_construction=64,
    )


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    start_char = models.PositiveIntegerField(default=0)
    end_char = models.PositiveIntegerField(default=0)
    #: The nearest heading before the chunk's start (Markdown), to say where a hit is.
    heading = models.CharField(max_length=255, blank=True, default="")
    embedding_model = models.CharField(max_length=100)
    embedding = VectorField()
    #: SHA-256 of ``text``: an unchanged chunk of a new version reuses its vector (``text_hash``).
    text_hash = models.CharField(max_length=64, blank=True, default="")
    #: The chunk's lexemes for keyword search, computed by PostgreSQL from ``text`` on every write.
    search_vector = models.GeneratedField(
        expression=SearchVector("text", config=SEARCH_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["document", "index"]
        constraints = [models.UniqueConstraint(fields=["document", "index"], name="knowledge_chunk_position")]
        indexes = [
            *(_hnsw_index(model) for model in EMBEDDING_MODELS.values()),
            GinIndex(fields=["search_vector"], name=SEARCH_INDEX),
            models.Index(fields=["text_hash"], name="knowledge_chunk_text_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.index}"
