import subprocess
import sys

import pytest

from config.env import BASE_DIR, ConfigError, Env, load_env

SECRET = "s3cr3t-value-that-must-never-be-printed-0123456789abcdefghijklmnop"


def make_env(monkeypatch, **values: str) -> Env:
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "LLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    load_env.cache_clear()
    try:
        return load_env()
    finally:
        load_env.cache_clear()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"DJANGO_ENV": "staging"}, "DJANGO_ENV: Input should be 'development', 'production' or 'test'"),
        ({"DJANGO_ENV": "test", "DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL: expected a PostgreSQL URL"),
        ({"DJANGO_ENV": "test", "REDIS_URL": "localhost:6379"}, "REDIS_URL: expected a Redis URL"),
        ({"DJANGO_ENV": "test", "LLM_BASE_URL": "localhost:11434/v1"}, "LLM_BASE_URL: expected an http(s) URL"),
        ({"DJANGO_ENV": "production", "ALLOWED_HOSTS": "example.com"}, "SECRET_KEY: required in production"),
        ({"DJANGO_ENV": "production", "SECRET_KEY": "short", "ALLOWED_HOSTS": "a"}, "SECRET_KEY: required"),
        ({"DJANGO_ENV": "production", "SECRET_KEY": SECRET}, "ALLOWED_HOSTS: required in production"),
    ],
)
def test_invalid_settings_name_the_variable(monkeypatch, values, message):
    with pytest.raises(ConfigError) as excinfo:
        make_env(monkeypatch, **values)
    assert str(excinfo.value).startswith(message)
    assert "\n" not in str(excinfo.value)


def test_production_is_the_default_and_needs_no_insecure_key(monkeypatch):
    monkeypatch.delenv("DJANGO_ENV", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        make_env(monkeypatch)


def test_valid_environment(monkeypatch):
    env = make_env(
        monkeypatch,
        DJANGO_ENV="production",
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS="example.com, api.example.com",
        DATABASE_URL="postgresql://app:pw@db:5432/app",
        REDIS_URL="redis://redis:6379/0",
        OPENAI_API_KEY="sk-test",
    )
    assert env.allowed_hosts == ["example.com", "api.example.com"]
    assert env.debug is False
    assert SECRET not in repr(env) and "sk-test" not in repr(env)


def test_startup_fails_with_one_line_naming_the_variable():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "DJANGO_ENV": "production", "SECRET_KEY": SECRET, "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "Configuration error: ALLOWED_HOSTS: required in production, comma-separated host names"
    )
    assert SECRET not in result.stderr + result.stdout
