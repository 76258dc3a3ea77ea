"""Documents over time: versions of a file name, and what goes when a document goes.

An upload whose file name (``Document.source_name``) is already in the knowledge base, with other
content, is a new version of it (``version`` one higher). It is processed like any document while
the previous version stays searchable; when its chunks are stored, the transaction that inserts
them also deletes the older versions of that name, so search shows exactly one version at every
moment. Should a later upload of the name be ready first, the earlier one is not stored (it fails
as superseded).

Unchanged text is not embedded again: a chunk's ``text_hash`` finds a stored vector of the same
text and model (``known_vectors``), so a new version with one paragraph edited costs the chunks
that paragraph is in.

Deleting a document (the admin, a queryset, a replacement) deletes its chunks (the foreign key
cascades) and, once the transaction commits, its file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from apps.knowledge.models import Chunk, Document

#: Hashes per lookup statement (an IN list).
_LOOKUP_BATCH = 1000


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def next_version(source_name: str) -> tuple[int, str | None]:
    """The version number of a new upload named ``source_name``, and the latest version's title
    (a title edited in the admin carries over), or None for a new name."""
    latest = Document.objects.filter(source_name=source_name).order_by("-version", "-pk").first()
    return (1, None) if latest is None else (latest.version + 1, latest.title)


def known_vectors(model_name: str, hashes: Iterable[str]) -> dict[str, Any]:
    """Stored vectors of ``model_name`` by the ``text_hash`` of their chunk, for those of ``hashes`` found."""
    wanted = sorted(set(hashes))
    found: dict[str, Any] = {}
    for start in range(0, len(wanted), _LOOKUP_BATCH):
        rows = Chunk.objects.filter(embedding_model=model_name, text_hash__in=wanted[start : start + _LOOKUP_BATCH])
        found.update(rows.values_list("text_hash", "embedding"))
    return found


@dataclass(frozen=True)
class Outcome:
    #: Stored documents' older versions, to delete with the store.
    replaced: list[int]
    #: Documents not to store, with the reason: a later version of their name is ready already.
    superseded: dict[int, str]


def resolve(storing: list[Document], locked: list[Document]) -> Outcome:
    """Which versions go when ``storing`` are stored; ``locked``: the rows of their names and
    their own, locked by the caller's transaction (in one statement, in pk order)."""
    replaced: set[int] = set()
    superseded: dict[int, str] = {}
    names = {d.source_name for d in storing if d.source_name}
    storing_ids = {d.pk for d in storing}
    for name in names:
        rows = [d for d in locked if d.source_name == name]
        candidates = [d for d in rows if d.pk in storing_ids or d.status == Document.Status.READY]
        winner = max(candidates, key=lambda d: d.pk)
        for row in rows:
            if row.pk == winner.pk:
                continue
            if row.pk in storing_ids and winner.pk not in storing_ids:
                superseded[row.pk] = (
                    f"Superseded by version {winner.version} of {name}, uploaded later and ready first; not stored"
                )
            elif row.pk < winner.pk and winner.pk in storing_ids:
                replaced.add(row.pk)
    return Outcome(sorted(replaced), superseded)


@receiver(post_delete, sender=Document, dispatch_uid="knowledge.delete_document_file")
def _delete_file(sender: type[Document], instance: Document, **kwargs: Any) -> None:
    # After the commit: a rolled-back delete must find its file still there.
    if instance.file:
        storage, name = instance.file.storage, instance.file.name
        transaction.on_commit(lambda: storage.delete(name))
