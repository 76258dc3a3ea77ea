import os
import re
import shlex
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.urls import reverse
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

        manager = Manager()
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(procfile) as fh:
            processes = parse_procfile(fh.read()).processes
        if "web" in processes:
            site = "http://{}:{}".format(*web_address(processes["web"], child_env))
            self.stdout.write(f"Admin: {site}{reverse('admin:index')}   Health: {site}/healthz")
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


def web_address(command: str, env: dict[str, str]) -> tuple[str, int]:
    """Where a browser reaches the web command: runserver's ``[addr:]port``, gunicorn's ``--bind``."""
    args = shlex.split(re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), command))
    address = ""
    if "runserver" in args:
        positional = [arg for arg in args[args.index("runserver") + 1 :] if not arg.startswith("-")]
        address = positional[0] if positional else ""
    for i, arg in enumerate(args):
        if arg in ("-b", "--bind") and i + 1 < len(args):
            address = args[i + 1]
        elif arg.startswith("--bind="):
            address = arg.removeprefix("--bind=")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    # Listening on every interface: the browser still goes to the loopback address.
    if host in ("", "0.0.0.0", "::", "0"):
        host = "127.0.0.1"
    return (f"[{host}]" if ":" in host else host), int(port) if port.isdigit() else 8000
