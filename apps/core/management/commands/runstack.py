import os
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from honcho.environ import parse_procfile
from honcho.manager import Manager

from apps.core import embedded_postgres


class Command(BaseCommand):
    help = (
        "Migrate, ensure the admin account, then run the Procfile's web server, worker and "
        "scheduler in the foreground. Ctrl-C stops all three and the embedded database."
    )

    def add_arguments(self, parser):
        parser.add_argument("--procfile", default=str(settings.BASE_DIR / "Procfile"))

    def handle(self, *args, procfile: str, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("ensure_admin")
        self.stdout.write("Admin: http://127.0.0.1:8000/admin/   Health: http://127.0.0.1:8000/healthz")

        manager = Manager()
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(procfile) as fh:
            processes = parse_procfile(fh.read()).processes
        for name, command in processes.items():
            # Children use this interpreter (the venv's) whatever PATH says.
            if command.startswith("python "):
                command = f"{sys.executable} {command.removeprefix('python ')}"
            manager.add_process(name, command, env=child_env, cwd=str(settings.BASE_DIR))
        try:
            manager.loop()
        finally:
            pgdata = settings.EMBEDDED_POSTGRES_DIR
            if pgdata is not None and embedded_postgres.stop(pgdata):
                self.stdout.write("Stopped the embedded database.")
        # Ctrl-C or SIGTERM is how a user ends `make run`: not a failure.
        if manager.returncode not in (0, 130, 143):
            sys.exit(manager.returncode)
