"""Production hardening (issue 12, items 1-4): login lockout, exact hosts, /healthz details, check --deploy."""

import subprocess
import sys
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.http.request import validate_host
from django.test import override_settings

from config.env import BASE_DIR, ConfigError, Env
from config.project import ProjectConfig

SECRET = "production-secret-key-for-tests-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "a long and correct passphrase 42"
HEALTH_TOKEN = "health-token-0123456789abcdef"


@pytest.fixture
def build_settings():
    """Django settings as ``config/`` builds them from an environment, e.g. production's.

    Building them makes that config django-cfg's current one; the running site's is put back.
    """
    from django.conf import settings
    from django_cfg.core.integration.drf import reload_drf_api_settings
    from django_cfg.core.state.registry import get_current_config, set_current_config

    previous = get_current_config()

    def build(django_env: str = "production", **values: object) -> dict:
        values = {"secret_key": SECRET, "allowed_hosts": "example.com"} | values
        env = Env(_env_file=None, django_env=django_env, database_url="postgresql://app:pw@db:5432/app", **values)
        return ProjectConfig.from_env(env).get_all_settings()

    yield build
    if previous is not None:
        set_current_config(previous)
    reload_drf_api_settings(settings.REST_FRAMEWORK)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser(email="boss@example.com", username="boss", password=PASSWORD)


def login(client, password: str, username: str = "boss@example.com", **headers: str):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password}, **headers)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


# -- 1. login lockout ------------------------------------------------------------------------------------


def axes_part(settings: dict) -> dict:
    keys = ("MIDDLEWARE", "AUTHENTICATION_BACKENDS", "AUTH_PASSWORD_VALIDATORS")
    return {key: value for key, value in settings.items() if key.startswith("AXES_") or key in keys}


def wait(minutes: float) -> None:
    """As if ``minutes`` had passed since the failed logins."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=minutes))


@pytest.mark.django_db
def test_production_locks_out_logins_after_repeated_failures_until_the_cool_off(client, staff, build_settings):
    production = build_settings()
    assert production["AXES_ENABLED"] and production["AXES_FAILURE_LIMIT"] == 5
    with override_settings(**axes_part(production)):
        statuses = [login(client, f"wrong guess {i}").status_code for i in range(20)]
        assert statuses[:4] == [200] * 4 and set(statuses[5:]) == {429}

        # The 21st login, with the right password, is refused too.
        response = login(client, PASSWORD)
        assert response.status_code == 429 and not logged_in(client)

        # The cool-off runs from the last attempt: a refused one starts it again.
        wait(minutes=14)
        assert login(client, PASSWORD).status_code == 429 and not logged_in(client)

        wait(minutes=16)
        response = login(client, PASSWORD)
        assert response.status_code == 302 and logged_in(client)


@pytest.mark.django_db
def test_the_lockout_is_per_account_and_ignores_a_forged_client_address(client, staff, build_settings):
    with override_settings(**axes_part(build_settings())):
        for i in range(5):
            # Without a proxy in front, X-Forwarded-For is whatever the client writes.
            login(client, "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}", REMOTE_ADDR=f"203.0.113.{i}")
        assert login(client, PASSWORD, REMOTE_ADDR="192.0.2.1").status_code == 429

        AccessAttempt.objects.all().delete()
        for i in range(5):
            login(client, "wrong", username=f"user{i}@example.com", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
        assert login(client, PASSWORD).status_code == 429  # the same address, locked out


def test_lockout_settings_by_environment(build_settings):
    assert build_settings("development")["AXES_ENABLED"] is False
    assert build_settings("test")["AXES_ENABLED"] is False
    assert build_settings("test", login_failure_limit=3)["AXES_FAILURE_LIMIT"] == 3
    assert build_settings(login_failure_limit=0)["AXES_ENABLED"] is False
    production = build_settings(login_cooloff_minutes=60)
    assert production["AXES_COOLOFF_TIME"] == timedelta(hours=1)
    assert production["AXES_IPWARE_META_PRECEDENCE_ORDER"] == ["REMOTE_ADDR"]
    assert "django_cfg.middleware.real_ip.RealIPMiddleware" not in production["MIDDLEWARE"]
    assert len(production["AUTH_PASSWORD_VALIDATORS"]) == 4

    proxied = build_settings(behind_proxy=True)
    assert proxied["AXES_IPWARE_META_PRECEDENCE_ORDER"][0] == "HTTP_X_FORWARDED_FOR"
    assert proxied["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")


def test_weak_admin_password_is_refused_in_production(monkeypatch, settings, db, capsys):
    from django.core.management import CommandError, call_command

    settings.ENVIRONMENT = "production"
    settings.ADMIN_ACCOUNT = {"EMAIL": "boss@example.com", "PASSWORD": "12345678"}
    with pytest.raises(CommandError, match=r"^ADMIN_PASSWORD: This password is too common\."):
        call_command("ensure_admin")


# -- 2. hosts and origins --------------------------------------------------------------------------------


def test_production_answers_exactly_the_configured_hosts_and_origins(build_settings):
    production = build_settings(allowed_hosts="example.com,.example.org")
    assert production["ALLOWED_HOSTS"] == ["example.com", ".example.org"]
    assert production["CSRF_TRUSTED_ORIGINS"] == ["https://example.com", "https://*.example.org"]
    assert production["CORS_ALLOWED_ORIGINS"] == ["https://example.com"]
    assert production["CORS_ALLOWED_ORIGIN_REGEXES"] == []
    for host in ("localhost", "vm", "foo.svc", "db.cluster.local", "10.0.0.5", "172.17.0.2"):
        assert not validate_host(host, production["ALLOWED_HOSTS"]), host


def test_development_answers_on_localhost(build_settings):
    development = build_settings("development", secret_key=None, allowed_hosts="")
    for host in ("localhost", "127.0.0.1"):
        assert validate_host(host, development["ALLOWED_HOSTS"])


@pytest.mark.django_db
def test_a_request_for_another_host_is_refused(client, build_settings):
    with override_settings(ALLOWED_HOSTS=build_settings()["ALLOWED_HOSTS"]):
        assert client.get("/healthz", HTTP_HOST="foo.svc").status_code == 400
        assert client.get("/healthz", HTTP_HOST="localhost").status_code == 400
        assert client.get("/healthz", HTTP_HOST="example.com").status_code in (200, 503)


# -- 3. /healthz -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_tells_anonymous_callers_the_status_only(client):
    response = client.get("/healthz")
    body = response.json()
    assert set(body) == {"status", "checks"}
    assert body["checks"] == {"database": "ok", "pgvector": "ok", "broker": "ok", "scheduler": "fail"}
    assert "PostgreSQL" not in response.content.decode() and "Broker" not in response.content.decode()


@pytest.mark.django_db
def test_healthz_details_for_staff_sessions(client, staff):
    client.force_login(staff)
    checks = client.get("/healthz").json()["checks"]
    assert checks["database"]["ok"] and checks["database"]["detail"].startswith("PostgreSQL ")
    assert checks["pgvector"]["detail"].startswith("pgvector ")


@pytest.mark.django_db
def test_healthz_details_with_the_health_token(client, django_user_model, settings):
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    member = django_user_model.objects.create_user(email="m@example.com", username="m", password=PASSWORD)

    def detailed(**kwargs) -> bool:
        return isinstance(client.get("/healthz", **kwargs).json()["checks"]["database"], dict)

    assert detailed(HTTP_AUTHORIZATION=f"Bearer {HEALTH_TOKEN}")
    assert detailed(data={"token": HEALTH_TOKEN})
    assert not detailed(HTTP_AUTHORIZATION="Bearer wrong-token")
    assert not detailed(data={"token": HEALTH_TOKEN[:-1]})
    assert not detailed(HTTP_AUTHORIZATION=f"Basic {HEALTH_TOKEN}")
    client.force_login(member)  # signed in, not staff
    assert not detailed()
    settings.HEALTH_TOKEN = None
    client.logout()
    assert not detailed(data={"token": ""})


def test_health_token_must_be_long():
    with pytest.raises(Exception, match="at least 16"):
        Env(_env_file=None, django_env="test", health_token="short")


# -- 4. check --deploy -----------------------------------------------------------------------------------


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": SECRET,
    "ALLOWED_HOSTS": "example.com",
    # `check --deploy` does not connect: any PostgreSQL URL will do.
    "DATABASE_URL": "postgresql://app@localhost/app",
}


def test_check_deploy_is_clean_in_production():
    result = manage("check", "--deploy", ADMIN_URL="k3J9x-Qw2/", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_check_deploy_warns_only_of_what_the_readme_documents():
    # ADMIN_URL left at admin/: the one warning, naming the variable that turns it off.
    result = manage("check", "--deploy", **PRODUCTION)
    assert "(core.W001)" in result.stderr and "Set ADMIN_URL" in result.stderr
    assert result.stderr.count("?: (") == 1, result.stderr
    # A proxy that redirects to HTTPS itself: SECURE_SSL_REDIRECT=false, and Django says so.
    result = manage("check", "--deploy", ADMIN_URL="k3J9x-Qw2/", SECURE_SSL_REDIRECT="false", **PRODUCTION)
    assert "(security.W008)" in result.stderr and result.stderr.count("?: (") == 1, result.stderr


def test_admin_url_moves_the_admin():
    code = "from django.urls import reverse; print(reverse('admin:index'))"
    result = manage("shell", "-c", code, ADMIN_URL="/k3J9x-Qw2", **PRODUCTION)
    assert result.stdout.strip().splitlines()[-1] == "/k3J9x-Qw2/", result.stderr


@pytest.mark.parametrize(("value", "message"), [("../etc/", "ADMIN_URL"), ("a b/", "ADMIN_URL")])
def test_bad_admin_url_names_the_variable(monkeypatch, value, message):
    from config.env import load_env

    monkeypatch.setenv("ADMIN_URL", value)
    load_env.cache_clear()
    try:
        with pytest.raises(ConfigError, match=f"^{message}: expected a URL path"):
            load_env()
    finally:
        load_env.cache_clear()
