import dramatiq
from dramatiq_crontab import cron

from apps.knowledge import pipeline
from apps.knowledge.conf import knowledge_settings

QUEUE = "knowledge"


@dramatiq.actor(
    actor_name="knowledge.process_document",
    queue_name=QUEUE,
    max_retries=5,
    min_backoff=5_000,
    max_backoff=300_000,
    on_retry_exhausted="knowledge.give_up_document",
)
def process_document_actor(document_id: int) -> None:
    """Extract, chunk and embed one document, and other pending ones with it in shared embedding
    batches (retried with backoff on provider errors)."""
    pipeline.process_document(document_id, group=True)


def enqueue_document(document_id: int) -> None:
    """Send a document to the workers, limited to ``KNOWLEDGE_PROCESSING_TIMEOUT`` (read per message)."""
    process_document_actor.send_with_options(
        args=(document_id,), time_limit=knowledge_settings().processing_timeout * 1000
    )


@dramatiq.actor(actor_name="knowledge.give_up_document", queue_name=QUEUE, max_retries=0)
def give_up_document(message_data: dict, retry_info: dict) -> None:
    from apps.knowledge.models import Document

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
        enqueue_document(document_id)
