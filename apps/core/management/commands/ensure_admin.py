import secrets

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the admin account if it does not exist; print its login the one time it is created."

    def handle(self, *args, **options) -> None:
        email, given_password = settings.ADMIN_ACCOUNT["EMAIL"], settings.ADMIN_ACCOUNT["PASSWORD"]
        User = get_user_model()
        lookup = {User.USERNAME_FIELD: email}
        if User.objects.filter(**lookup).exists():
            self.stdout.write(f"Admin account {email} exists.")
            return
        if given_password and settings.ENVIRONMENT == "production":
            try:
                password_validation.validate_password(given_password, User(**lookup))
            except ValidationError as error:
                raise CommandError(f"ADMIN_PASSWORD: {' '.join(error.messages)}") from None
        password = given_password or secrets.token_urlsafe(12)
        User.objects.create_superuser(**lookup, password=password, username=email.split("@")[0])
        shown = "(from ADMIN_PASSWORD)" if given_password else password
        self.stdout.write(self.style.SUCCESS(f"Created admin account: {email} / password {shown}"))
