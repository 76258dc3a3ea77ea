import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from config.env import load_env


class Command(BaseCommand):
    help = "Create the admin account if it does not exist; print its login the one time it is created."

    def handle(self, *args, **options) -> None:
        env = load_env()
        User = get_user_model()
        lookup = {User.USERNAME_FIELD: env.admin_email}
        if User.objects.filter(**lookup).exists():
            self.stdout.write(f"Admin account {env.admin_email} exists.")
            return
        password = env.admin_password.get_secret_value() if env.admin_password else secrets.token_urlsafe(12)
        User.objects.create_superuser(
            **lookup, password=password, username=env.admin_email.split("@")[0]
        )
        shown = "(from ADMIN_PASSWORD)" if env.admin_password else password
        self.stdout.write(
            self.style.SUCCESS(f"Created admin account: {env.admin_email} / password {shown}")
        )
