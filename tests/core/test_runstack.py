"""`make run` in miniature: runstack with web, worker and scheduler, then Ctrl-C."""

import signal
import urllib.request
import uuid

import psutil
import pytest
from dramatiq_postgres import PostgresBroker

from apps.core.models import Heartbeat
from apps.core.tasks import record_heartbeat
from config.env import BASE_DIR
from tests.helpers import free_port, wait_for


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except OSError:
        return None


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_runstack_serves_works_and_stops_cleanly_on_ctrl_c(tmp_path, test_database_url, start_process):
    port = free_port()
    procfile = (BASE_DIR / "Procfile").read_text().replace("127.0.0.1:8000", f"127.0.0.1:{port} --noreload")
    (tmp_path / "Procfile").write_text(procfile)
    env = {
        "DJANGO_ENV": "development",
        "DATABASE_URL": test_database_url,
        "REDIS_URL": "",
        "ADMIN_PASSWORD": "pw-for-test",
    }

    stack = start_process("runstack", "--procfile", str(tmp_path / "Procfile"), env=env, name="runstack")
    wait_for(
        lambda: _status(f"http://127.0.0.1:{port}/admin/login/") == 200 or stack.popen.poll() is not None,
        timeout=90,
        what="the admin login page",
    )
    assert stack.popen.poll() is None, stack.output()
    children = psutil.Process(stack.popen.pid).children(recursive=True)
    assert len(children) >= 3

    name = f"runstack-{uuid.uuid4().hex[:8]}"
    broker = PostgresBroker(url=test_database_url, results=False)
    try:
        broker.enqueue(record_heartbeat.message(name))
    finally:
        broker.close()
    wait_for(lambda: Heartbeat.objects.filter(name=name).exists(), timeout=60, what="the worker to run a task")

    stack.popen.send_signal(signal.SIGINT)
    assert stack.popen.wait(30) == 0, stack.output()
    output = stack.output()
    assert "Created admin account: admin@example.com / password (from ADMIN_PASSWORD)" in output
    assert f"Admin: http://127.0.0.1:{port}/admin/   Health: http://127.0.0.1:{port}/healthz" in output
    for prefix in ("web", "worker", "scheduler"):
        assert f"{prefix} started" in output and f"{prefix} stopped" in output
    wait_for(
        lambda: not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children),
        timeout=10,
        what="every child process to exit",
    )
