import dramatiq
from django.conf import settings
from dramatiq_crontab import cron

from . import pipeline

QUEUE = "knowledge"


@dramatiq.actor(
    actor_name="knowledge.process_document",
    queue_name=QUEUE,
    max_retries=5,
    min_backoff=5_000,
    max_backoff=300_000,
    time_limit=settings.KNOWLEDGE["PROCESSING_TIMEOUT"] * 1000,
    on_retry_exhausted="knowledge.give_up_document",
)
def process_document(document_id: int) -> None:
    """Extract, chunk and embed one document (retried with backoff on provider errors)."""
    pipeline.process_document(document_id)


@dramatiq.actor(actor_name="knowledge.give_up_document", queue_name=QUEUE, max_retries=0)
def give_up_document(message_data: dict, retry_info: dict) -> None:
    from .models import Document

    document_id = message_data["args"][0]
    Document.objects.filter(pk=document_id).exclude(status=Document.Status.READY).update(
        status=Document.Status.FAILED,
        error_message=f"Gave up after {retry_info.get('retries', '?')} retries: the embedding provider kept failing",
    )


@cron("*/5 * * * *")
@dramatiq.actor(actor_name="knowledge.requeue_stale_documents", queue_name=QUEUE, max_retries=0)
def requeue_stale_documents() -> None:
    """Picks up documents whose worker died or whose message was lost."""
    for document_id in pipeline.stale_documents():
        process_document.send(document_id)
