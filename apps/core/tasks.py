import dramatiq
from dramatiq_crontab import interval

from apps.core.models import Heartbeat

SCHEDULER_HEARTBEAT = "scheduler"
HEARTBEAT_SECONDS = 30


@interval(seconds=HEARTBEAT_SECONDS)
@dramatiq.actor(actor_name="core.record_heartbeat", max_retries=0)
def record_heartbeat(name: str = SCHEDULER_HEARTBEAT) -> None:
    """Sent by the scheduler every 30 s and run by a worker: proves both are alive."""
    Heartbeat.beat(name)
