#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    try:
        execute_from_command_line(sys.argv)
    except OperationalError as error:
        # A database that cannot be reached is a configuration problem: one line, no traceback.
        from django.conf import settings
        from django.db import connection

        from config.database import connection_failure

        message = connection_failure(error, connection.settings_dict, settings.EMBEDDED_POSTGRES_DIR)
        if message is None:
            raise
        sys.exit(f"Configuration error: {message}")


if __name__ == "__main__":
    main()
