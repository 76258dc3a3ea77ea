"""The admin is the site: where logging in and ``/`` lead, and what its navigation lists."""

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

PROJECT_SECTIONS = ["LLM usage", "Knowledge base", "Users", "Background tasks"]
# django-cfg's own sections and the apps it installs that this project does not use.
UNUSED = [
    "Dashboard",
    "Users & Access",
    "TOTP",
    "Two-Factor Authentication",
    "Mail",
    "Mailer",
    "Constance",
    "Config",
    "Analytics",
    "Auth Token",
    "Token Blacklist",
    "Sitemap",
    "Django CFG Accounts",
    "OAuth Connections",
    "All applications",
]


def visible_text(html: str) -> list[str]:
    """The page's text, one line per element, without scripts and styles."""
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    return [line.strip() for line in re.sub(r"<[^>]+>", "\n", html).splitlines() if line.strip()]


def test_logging_in_at_the_admin_lands_on_its_index(client, django_user_model):
    django_user_model.objects.create_user(
        email="staff@example.com", username="staff", password="a long enough password", is_staff=True
    )
    response = client.post(
        reverse("admin:login"), {"username": "staff@example.com", "password": "a long enough password"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
    assert client.get(response["Location"]).status_code == 200


def test_the_root_redirects_to_the_admin(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_the_admin_shows_the_projects_sections_first_and_hides_the_unused_ones(client, admin_user):
    client.force_login(admin_user)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200

    assert [app["name"] for app in response.context["app_list"]] == PROJECT_SECTIONS
    models = {app["name"]: [m["object_name"] for m in app["models"]] for app in response.context["app_list"]}
    assert models["Knowledge base"] == ["Chunk", "Document"]
    assert models["Users"] == ["CustomUser", "Group", "AccessAttempt"]

    # Sidebar and index: the project's sections, in order, and nothing of the unused apps.
    text = visible_text(response.content.decode())
    assert list(dict.fromkeys(line for line in text if line in PROJECT_SECTIONS)) == PROJECT_SECTIONS
    for link in ("Documents", "Upload documents", "Cost dashboard", "Tasks"):
        assert link in text
    assert [line for line in text if line in UNUSED] == []


def test_the_sidebar_links_resolve_and_follow_permissions(client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user(email="reader@example.com", username="reader", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_document"))
    client.force_login(staff)
    response = client.get(reverse("admin:index"))
    text = visible_text(response.content.decode())
    assert "Documents" in text
    # Without the add permission there is no upload link, nor sections the user cannot open.
    assert "Upload documents" not in text and "Request log" not in text and "Login lockouts" not in text
    assert [app["name"] for app in response.context["app_list"]] == ["Knowledge base"]
