import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from dramatiq_crontab import scheduler

from apps.core.models import Heartbeat
from config.env import load_env
from config.project import ProjectConfig


@pytest.mark.django_db
def test_healthz_is_503_until_the_scheduler_beats(admin_client):
    response = admin_client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"]["ok"] and body["checks"]["pgvector"]["ok"]
    assert body["checks"]["broker"]["ok"]
    assert body["checks"]["scheduler"] == {"ok": False, "detail": body["checks"]["scheduler"]["detail"]}

    Heartbeat.beat("scheduler")
    response = admin_client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
def test_healthz_reports_a_stale_heartbeat(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    Heartbeat.objects.create(name="scheduler", last_seen_at=timezone.now() - timedelta(minutes=10))
    response = admin_client.get("/healthz")
    assert response.status_code == 503
    assert "ago" in response.json()["checks"]["scheduler"]["detail"]


def test_heartbeat_is_registered_with_the_scheduler():
    import apps.core.tasks  # noqa: F401  (what `manage.py crontab` imports)

    assert "core.record_heartbeat" in {job.name for job in scheduler.get_jobs()}


@pytest.mark.django_db
def test_ensure_admin_creates_the_account_once(capsys, settings):
    settings.ADMIN_ACCOUNT = {"EMAIL": "boss@example.com", "PASSWORD": None}
    call_command("ensure_admin")
    first = capsys.readouterr().out
    call_command("ensure_admin")
    second = capsys.readouterr().out
    password = first.strip().rsplit(" ", 1)[-1]
    assert first.startswith("Created admin account: boss@example.com / password ")
    assert second.strip() == "Admin account boss@example.com exists."
    user = get_user_model().objects.get(email="boss@example.com")
    assert user.is_superuser and user.is_staff and user.check_password(password)


@pytest.mark.django_db
def test_ensure_admin_takes_the_password_from_the_environment(capsys, monkeypatch, settings):
    monkeypatch.setenv("ADMIN_PASSWORD", "correct horse battery staple")
    load_env.cache_clear()
    try:
        # What config/ makes of the environment (settings are computed once, at startup).
        settings.ADMIN_ACCOUNT = ProjectConfig.from_env(load_env()).get_additional_settings()["ADMIN_ACCOUNT"]
        call_command("ensure_admin")
    finally:
        load_env.cache_clear()
    out = capsys.readouterr().out
    assert "correct horse" not in out and "(from ADMIN_PASSWORD)" in out
    user = get_user_model().objects.get(email=load_env().admin_email)
    assert user.check_password("correct horse battery staple")


@pytest.mark.django_db
def test_admin_login_page_and_staff_access(client, admin_user):
    assert client.get("/admin/login/").status_code == 200
    assert client.get("/admin/").status_code == 302
    client.force_login(admin_user)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/django_dramatiq/task/").status_code == 200
