"""Real Dramatiq workers, in their own processes, against each real broker."""

import uuid

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq_postgres import PostgresBroker

from apps.core.models import Heartbeat
from apps.core.tasks import record_heartbeat
from tests.core.prerequisites import REDIS_MISSING, missing
from tests.helpers import wait_for

REDIS_URL = "redis://127.0.0.1:6379/15"


def _redis_available() -> bool:
    try:
        return redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        return False


# Committed transactions: django-dramatiq's AdminMiddleware writes the task's row from both
# the enqueuing thread and the worker thread.
@pytest.mark.django_db(transaction=True)
def test_actor_runs_on_the_stub_broker_in_tests():
    broker = dramatiq.get_broker()
    worker = dramatiq.Worker(broker, worker_timeout=100)
    worker.start()
    try:
        record_heartbeat.send("unit")
        broker.join(record_heartbeat.queue_name)
        worker.join()
    finally:
        worker.stop()
    assert Heartbeat.objects.get(name="unit").age_seconds() < 60


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker_kind", ["postgres", "redis"])
def test_real_worker_process_writes_to_the_database(broker_kind, test_database_url, start_process):
    env = {"DJANGO_ENV": "development", "DATABASE_URL": test_database_url, "REDIS_URL": ""}
    if broker_kind == "redis":
        if not _redis_available():
            missing(REDIS_MISSING)
        redis.Redis.from_url(REDIS_URL).flushdb()
        env["REDIS_URL"] = REDIS_URL
        broker = RedisBroker(url=REDIS_URL)
    else:
        broker = PostgresBroker(url=test_database_url, results=False)

    worker = start_process("rundramatiq", "--processes", "1", "--threads", "2", env=env, name=f"worker-{broker_kind}")
    name = f"e2e-{broker_kind}-{uuid.uuid4().hex[:8]}"
    try:
        broker.enqueue(record_heartbeat.message(name))
        wait_for(
            lambda: Heartbeat.objects.filter(name=name).exists() or worker.popen.poll() is not None,
            timeout=60,
            what=f"the {broker_kind} worker to run the task",
        )
    finally:
        broker.close()
    assert worker.popen.poll() is None, worker.output()
    assert Heartbeat.objects.filter(name=name).exists(), worker.output()
