import os
import signal
import socket

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from apps.core import embedded_postgres
from config.database import database_config
from config.env import load_env
from tests.helpers import wait_for


def test_socket_dsn_becomes_discrete_fields():
    settings = database_config(
        "postgresql://postgres@/llmplatform?host=%2Fsrv%2Fpg%20data&port=5433"
    ).to_django_config()
    assert (settings["NAME"], settings["USER"], settings["HOST"], settings["PORT"]) == (
        "llmplatform",
        "postgres",
        "/srv/pg data",
        5433,
    )
    assert "host" not in settings["OPTIONS"] and settings["OPTIONS"]["pool"] is False


def test_tcp_dsn_with_password():
    settings = database_config("postgres://app:p%40ss@db.internal:6543/app?sslmode=require").to_django_config()
    assert (settings["HOST"], settings["PORT"], settings["PASSWORD"]) == ("db.internal", 6543, "p@ss")
    assert settings["OPTIONS"]["sslmode"] == "require"


@pytest.mark.django_db
def test_tests_run_on_postgres_with_pgvector():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector")
        (distance,) = cursor.fetchone()
    assert 0 < distance < 0.01
    assert "django.contrib.postgres" in __import__("django.conf").conf.settings.INSTALLED_APPS


def _system_postgres_url() -> str | None:
    # The machine's own PostgreSQL 15 has no pgvector: the case a user hits with a stock server.
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        url = "postgresql://postgres@127.0.0.1:5432/postgres"
        with psycopg.connect(url, connect_timeout=3) as conn:
            available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        return None if available else url
    except OSError:
        return None
    except psycopg.Error:
        return None


def test_server_without_pgvector_is_refused_with_a_clear_message():
    from apps.core.checks import pgvector_errors

    url = _system_postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL without pgvector on 127.0.0.1:5432 to test against")
    with psycopg.connect(url) as conn:
        errors = pgvector_errors(conn)
    assert len(errors) == 1
    assert "needs the pgvector extension" in errors[0].msg
    assert "pgvector/pgvector" in errors[0].hint


@pytest.mark.django_db
def test_pgvector_check_passes_on_the_project_database():
    call_command("check", "--database", "default")


def test_embedded_server_recovers_from_a_killed_run(tmp_path):
    # Use a short path: unix socket names are limited to ~107 bytes.
    pgdata = tmp_path / "pg"
    server = embedded_postgres.ensure_running(pgdata)
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not embedded_postgres._is_live_postgres(pid), timeout=10, what="the server to die")
        # Leave a pid file behind that names a live process which is not postgres.
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        lines[0] = str(os.getpid())
        (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
        assert embedded_postgres.running_server(pgdata) is None

        restarted = embedded_postgres.ensure_running(pgdata)
        with psycopg.connect(restarted.url(), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert restarted.url() == server.url()
    finally:
        assert embedded_postgres.stop(pgdata) is True
    assert embedded_postgres.running_server(pgdata) is None
    assert embedded_postgres.stop(pgdata) is False


def test_default_database_is_the_embedded_server_unless_database_url_is_set():
    env = load_env()
    if env.database_url:
        pytest.skip("DATABASE_URL is set for this run")
    server = embedded_postgres.running_server(env.var_dir / "pgdata")
    assert server is not None
    assert connection.settings_dict["HOST"] == str(server.socket_dir)


# -- a database that cannot be reached: one line naming DATABASE_URL, no traceback (issue 12, item 7) --


def test_migrate_against_an_unreachable_database_prints_one_line():
    import subprocess
    import sys

    from config.env import BASE_DIR

    result = subprocess.run(
        [sys.executable, "manage.py", "migrate"],
        cwd=BASE_DIR,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "DJANGO_ENV": "development",
            # Port 1: nothing listens there, the connection is refused at once.
            "DATABASE_URL": "postgresql://app:pw-never-printed@127.0.0.1:1/app",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip() == "Configuration error: DATABASE_URL: cannot connect to 127.0.0.1:1 (Connection refused)"
    )
    assert "pw-never-printed" not in result.stdout + result.stderr


def _connect_error(settings_dict: dict, django_db_blocker) -> Exception:
    from django.db.backends.postgresql.base import DatabaseWrapper

    wrapper = DatabaseWrapper({**connection.settings_dict, **settings_dict}, alias="unreachable")
    try:
        with django_db_blocker.unblock():
            wrapper.ensure_connection()
    except Exception as exc:
        return exc
    finally:
        wrapper.close()
    raise AssertionError("connected")


def test_a_stopped_embedded_server_is_named_with_its_log(tmp_path, django_db_blocker):
    from config.database import connection_failure

    pgdata = tmp_path / "pgdata"
    error = _connect_error({"HOST": str(pgdata), "PORT": 5432, "PASSWORD": ""}, django_db_blocker)
    message = connection_failure(error, {"HOST": str(pgdata), "PORT": 5432}, embedded_dir=pgdata)
    assert message == (
        f"DATABASE_URL is unset and the embedded server in {pgdata} does not answer (No such file or directory); "
        f"see its log {pgdata / 'log'}, or run `python -m config start`"
    )


@pytest.mark.django_db
def test_errors_of_queries_are_not_connection_failures():
    from django.db import OperationalError

    from config.database import connection_failure

    with pytest.raises(OperationalError) as excinfo, connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)")
    assert connection_failure(excinfo.value, connection.settings_dict, embedded_dir=None) is None


def test_an_embedded_server_that_does_not_start_is_one_configuration_error(monkeypatch):
    import subprocess

    from config.database import database_url
    from config.env import ConfigError, Env

    def fail(pgdata):
        raise subprocess.CalledProcessError(1, ["/opt/pg/bin/pg_ctl", "start"])

    monkeypatch.setattr(embedded_postgres, "ensure_running", fail)
    with pytest.raises(ConfigError) as excinfo:
        database_url(Env(_env_file=None, django_env="test", database_url=None))
    assert str(excinfo.value) == (
        "DATABASE_URL is unset and the embedded server in var/pgdata did not start "
        "(pg_ctl exited with status 1); see its log var/pgdata/log"
    )
