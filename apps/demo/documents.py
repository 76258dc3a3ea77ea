"""The demo documents: a few pages made from standard library docstrings, run through the knowledge pipeline.

They go through the real upload and processing code with the demo client, so the knowledge base
has content and the log shows the embedding calls it took. Their titles carry
``DEMO_DOCUMENT_PREFIX``, which is how ``reset_demo_data()`` finds them again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.demo.recorder import DemoRecorder, Stamp
from apps.demo.texts import module_doc
from apps.knowledge.documents import DuplicateDocument, add_document
from apps.knowledge.pipeline import process_document
from apps.llm import errors
from apps.llm.client import LLMClient
from apps.llm.testing.simulator import OpenAISimulator

__all__ = ["DEMO_DOCUMENT_PREFIX", "add_demo_documents", "demo_documents"]

DEMO_DOCUMENT_PREFIX = "[demo] "


def demo_documents() -> list[tuple[str, str, str]]:
    """(file name, title, text) of the demo documents, made from standard library docstrings."""
    groups = (
        ("demo-data-formats.md", "Data formats: json and csv", ("json", "csv")),
        ("demo-numbers.md", "Numbers and randomness: statistics, random, heapq", ("statistics", "random", "heapq")),
        ("demo-text.md", "Text processing: re, difflib, string", ("re", "difflib", "string")),
    )
    documents = []
    for name, title, modules in groups:
        body = "\n\n".join(f"## {m}\n\n{module_doc(m)}" for m in modules)
        text = f"# {title}\n\nDemo document made by `manage.py llm_demo` from Python's docstrings.\n\n{body}\n"
        documents.append((name, DEMO_DOCUMENT_PREFIX + title, text))
    return documents


def add_demo_documents(
    client: LLMClient, recorder: DemoRecorder, sim: OpenAISimulator, owner: Any, at: datetime
) -> list[str]:
    """The demo documents through the knowledge pipeline; what happened to each, one line each."""
    outcomes = []
    error_rate, sim.error_rate = sim.error_rate, 0.0  # an upload is not the place to show retries
    try:
        for i, (name, title, text) in enumerate(demo_documents()):
            recorder.stamp = Stamp(min(at + timedelta(minutes=17 * i), timezone.now()))
            try:
                # Processed inside the upload's transaction: by the time the worker gets the
                # queued message the document is ready, so it skips it (and never embeds it
                # again with the real providers).
                with transaction.atomic():
                    added = add_document(name=name, data=text.encode(), title=title, user=owner)
                    document = process_document(added.pk, client=client)
            except DuplicateDocument as exists:
                outcomes.append(f"{title}: already there (document {exists.existing.pk})")
                continue
            except errors.LLMError as error:
                outcomes.append(f"{title}: not added ({error})")
                continue
            if document is None:  # claimed by someone else first: cannot happen inside the transaction
                outcomes.append(f"{title}: added, left to the worker")
            else:
                outcomes.append(
                    f"{document.title}: {document.status}, {document.chunk_count} chunks, {document.embedding_model}"
                )
    finally:
        sim.error_rate = error_rate
    return outcomes
