"""Background jobs of the LLM app, run by the Dramatiq workers (``manage.py rundramatiq``).

Each actor is a thin wrapper: the work lives in a module of its own (``pricing_sync``...),
so it can be run and tested without a broker. Scheduled actors carry their dramatiq_crontab
decorator here; ``manage.py crontab`` imports this module to register them.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage
from dramatiq_crontab import cron

from apps.llm.accounting.request_log import replay_spool
from apps.llm.accounting.retention import delete_old_requests as delete
from apps.llm.conf import llm_settings
from apps.llm.pricing.catalogs import SyncError, SyncFailed
from apps.llm.pricing.sync import SyncRequest, record_sync
from apps.llm.transport.providers import OPENAI, OPENROUTER

# -- model-pricing sync ------------------------------------------------------------------------

#: Daily, at an odd minute so it does not join the on-the-hour crowd at OpenRouter.
PRICING_SYNC_SCHEDULE = "17 3 * * *"
#: The scheduled sync refreshes both price lists: OpenRouter's live catalog, and our OpenAI
#: table, so that a deploy with an updated data/openai-prices.json takes effect without a step.
PRICING_SYNC_PROVIDERS = (OPENROUTER, OPENAI)
#: Transient failures (network, timeouts, HTTP 5xx/429) are retried this many times, from 5
#: minutes apart to an hour; a refused or malformed catalog is not (it would fail the same way).
PRICING_SYNC_RETRIES = 3


class PricingSyncRetry(dramatiq.Retry):
    """A transient sync failure, to be retried; Dramatiq logs no traceback for a ``Retry``."""


def _retry_transient(retries: int, exception: BaseException) -> bool:
    transient = isinstance(exception, PricingSyncRetry) or (isinstance(exception, SyncError) and exception.transient)
    return retries < PRICING_SYNC_RETRIES and transient


@cron(PRICING_SYNC_SCHEDULE)
@dramatiq.actor(
    actor_name="llm.sync_model_pricing",
    queue_name="default",
    time_limit=5 * 60 * 1000,
    retry_when=_retry_transient,
    # A failed sync is an expected outcome, recorded as a failed run and logged in one line
    # below: the worker logs it without a traceback and does not retry it.
    throws=(SyncError,),
    min_backoff=5 * 60 * 1000,
    max_backoff=60 * 60 * 1000,
)
def sync_model_pricing(
    providers: list[str] | None = None, base_url: str | None = None, trigger: str = "schedule"
) -> None:
    """Sync the model prices and record each provider's run as a ``PricingSyncRun``.

    ``base_url`` replaces ``OPENROUTER_BASE_URL`` for this run (tests point it at a loopback
    server; no API key is sent there). Each provider is synced and recorded on its own, so an
    OpenRouter outage does not hold back the OpenAI table; the message then fails with every
    error, and is retried if any of them was transient.
    """
    errors: list[SyncError] = []
    for provider in providers or PRICING_SYNC_PROVIDERS:
        request = SyncRequest(provider=provider, base_url=base_url if provider == OPENROUTER else None)
        try:
            record_sync(request, trigger=trigger)
        except SyncError as exc:
            errors.append(exc)
    if errors:
        failure = SyncFailed(errors)
        message = CurrentMessage.get_current_message()  # None when called directly
        retries = message.options.get("retries", 0) if message is not None else PRICING_SYNC_RETRIES
        attempt = f"attempt {retries + 1} of {PRICING_SYNC_RETRIES + 1}" if message is not None else "not retried"
        if failure.transient and retries < PRICING_SYNC_RETRIES:
            sync_model_pricing.logger.warning("Pricing sync failed (%s, retried later): %s", attempt, failure)
            raise PricingSyncRetry(str(failure))
        sync_model_pricing.logger.warning("Pricing sync failed (%s): %s", attempt, failure)
        raise failure


# -- request log upkeep --------------------------------------------------------------------------


@cron("41 2 * * *")
@dramatiq.actor(actor_name="llm.delete_old_requests", queue_name="default", max_retries=3, time_limit=60 * 60 * 1000)
def delete_old_requests() -> None:
    """Keeps the raw request log to ``LLM_RETENTION_DAYS`` (the daily rollups are kept)."""
    days = llm_settings().retention_days
    deleted = delete(days=days)
    delete_old_requests.logger.info("Deleted %d request-log rows older than %d days", deleted, days)


@cron("*/5 * * * *")
@dramatiq.actor(actor_name="llm.replay_request_spool", queue_name="default", max_retries=0)
def replay_request_spool() -> None:
    """Writes the request records that processes which died before writing them left behind."""
    config = llm_settings()
    files, rows = replay_spool(config.spool_dir, store_text=config.store_text)
    if files:
        replay_request_spool.logger.warning("Replayed %d spool files: %d records were missing", files, rows)
