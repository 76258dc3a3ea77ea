"""The demo users the simulated traffic is attributed to, so per-user views have data.

They are ordinary accounts with no usable password: nobody can log in as them.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

__all__ = ["DEMO_USER_COUNT", "demo_user_email", "ensure_demo_users"]

DEMO_USER_COUNT = 5


def demo_user_email(n: int) -> str:
    """The address of demo user ``n`` (from 1): ``example.com`` can never reach anyone."""
    return f"demo-user-{n}@example.com"


def ensure_demo_users(count: int = DEMO_USER_COUNT) -> list[Any]:
    """``demo-user-N@example.com``, created if missing, with no usable password."""
    User = get_user_model()
    users = []
    for n in range(1, count + 1):
        email = demo_user_email(n)
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User(email=email, username=f"demo-user-{n}", first_name="Demo", last_name=f"User {n}")
            if any(f.name == "is_test_account" for f in User._meta.fields):
                user.is_test_account = True  # django-cfg's flag for non-customers
            user.set_unusable_password()
            user.save()
        users.append(user)
    return users
