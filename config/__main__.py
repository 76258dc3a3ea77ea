"""``python -m config start|stop|status``: manage the embedded database without Django."""

import sys

from apps.core import embedded_postgres

from .env import ConfigError, load_env


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    try:
        env = load_env()
    except ConfigError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2
    if env.database_url:
        print("DATABASE_URL is set: the embedded database is not used.")
        return 0
    pgdata = env.var_dir / "pgdata"
    if command == "start":
        print(embedded_postgres.ensure_running(pgdata).url())
    elif command == "stop":
        print("stopped" if embedded_postgres.stop(pgdata) else "not running")
    elif command == "status":
        server = embedded_postgres.running_server(pgdata)
        print(server.url() if server else "not running")
        return 0 if server else 1
    else:
        print("usage: python -m config start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
