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
