"""Loaded with ``-p`` before pytest-django imports the settings (which start the embedded server)."""

import os

os.environ.setdefault("DJANGO_ENV", "test")

from apps.core import embedded_postgres
from config.env import load_env

_env = load_env()
_PGDATA = _env.var_dir / "pgdata"
_STARTED_BY_THIS_SESSION = _env.database_url is None and embedded_postgres.running_server(_PGDATA) is None


def pytest_unconfigure(config):
    # Leave the machine as we found it: stop the embedded server if this run started it.
    if _STARTED_BY_THIS_SESSION:
        embedded_postgres.stop(_PGDATA)
