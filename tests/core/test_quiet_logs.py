"""Expected conditions log one line, never a traceback (issue 12, item 12)."""

import logging

import dramatiq
import pytest
from django.core.management import call_command

from apps.core.management.commands.runstack import web_address
from apps.llm.models import PricingSyncRun
from apps.llm.tasks import PRICING_SYNC_RETRIES, sync_model_pricing

PASSWORD = "a long and correct passphrase 42"


@pytest.mark.django_db
def test_admin_logins_log_no_errors(client, django_user_model, caplog):
    django_user_model.objects.create_superuser(email="boss@example.com", username="boss", password=PASSWORD)
    caplog.set_level(logging.INFO)
    client.post("/admin/login/", {"username": "boss@example.com", "password": "wrong"})
    response = client.post("/admin/login/?next=/admin/", {"username": "boss@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not any("Telegram" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_an_offline_pricing_sync_logs_one_warning_per_attempt_and_no_traceback(caplog):
    broker = dramatiq.get_broker()
    broker.flush_all()
    caplog.set_level(logging.INFO)
    offline = "http://127.0.0.1:1/api/v1"  # nothing listens on port 1: connection refused
    worker = dramatiq.Worker(broker, worker_timeout=100)
    worker.start()
    try:
        # Retried milliseconds apart instead of minutes.
        sync_model_pricing.send_with_options(
            kwargs={"providers": ["openrouter"], "base_url": offline, "trigger": "admin"}, min_backoff=1, max_backoff=20
        )
        broker.join(sync_model_pricing.queue_name, fail_fast=False)
        worker.join()
    finally:
        worker.stop()
        broker.flush_all()

    assert PricingSyncRun.objects.filter(status="failed").count() == PRICING_SYNC_RETRIES + 1
    reason = ": GET http://127.0.0.1:1/api/v1/models?output_modalities=all: cannot connect: "
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Pricing sync failed")]
    assert [line.split(reason)[0] for line in lines] == [
        "Pricing sync failed (attempt 1 of 4, retried later)",
        "Pricing sync failed (attempt 2 of 4, retried later)",
        "Pricing sync failed (attempt 3 of 4, retried later)",
        "Pricing sync failed (attempt 4 of 4)",
    ]
    assert all(reason in line and "\n" not in line for line in lines)
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    assert "Traceback" not in caplog.text


# -- the start banner --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "address"),
    [
        ("python manage.py runserver 127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("python manage.py runserver 127.0.0.1:9123 --noreload", ("127.0.0.1", 9123)),
        ("python manage.py runserver 8500", ("127.0.0.1", 8500)),
        ("python manage.py runserver", ("127.0.0.1", 8000)),
        ("gunicorn config.wsgi --bind 0.0.0.0:8100 --workers 3", ("127.0.0.1", 8100)),
        ("gunicorn config.wsgi -b [::1]:8200", ("[::1]", 8200)),
        ("gunicorn config.wsgi --bind=0.0.0.0:$PORT", ("127.0.0.1", 5005)),
    ],
)
def test_web_address_of_the_procfile_command(command, address):
    assert web_address(command, {"PORT": "5005"}) == address


def test_the_start_banner_shows_the_procfile_port(tmp_path, monkeypatch, settings, capsys):
    from apps.core.management.commands import runstack

    monkeypatch.setattr(runstack, "call_command", lambda *args, **kwargs: None)  # no migrate, no admin
    settings.EMBEDDED_POSTGRES_DIR = None  # the shared test server keeps running
    (tmp_path / "Procfile").write_text('web: python -c "" runserver 127.0.0.1:8765\n')
    call_command("runstack", "--procfile", str(tmp_path / "Procfile"))
    banner = capsys.readouterr().out.splitlines()[0]
    assert banner == "Admin: http://127.0.0.1:8765/admin/   Health: http://127.0.0.1:8765/healthz"
