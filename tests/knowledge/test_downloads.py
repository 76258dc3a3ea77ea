"""Uploaded files: staff download them through a permission-checked admin view, not /media/."""

from __future__ import annotations

import importlib

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings
from django.urls import clear_url_caches, reverse

from apps.knowledge.documents import add_document

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_in_tmp")]

CONTENT = b"Quarterly figures\n\nRevenue went up.\n"


@pytest.fixture
def document():
    return add_document(name="Quarterly report (final).txt", data=CONTENT)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(email="staff@example.com", username="staff", is_staff=True)


def download_url(document) -> str:
    return reverse("admin:knowledge_document_download", args=[document.pk])


def test_staff_with_the_view_permission_download_the_original_file(client, staff, document):
    staff.user_permissions.add(Permission.objects.get(codename="view_document"))
    client.force_login(staff)
    response = client.get(download_url(document))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == CONTENT
    assert response["Content-Disposition"] == 'attachment; filename="Quarterly report (final).txt"'


def test_staff_without_the_permission_are_refused(client, staff, document):
    client.force_login(staff)
    assert client.get(download_url(document)).status_code == 403


def test_anonymous_visitors_are_sent_to_the_login(client, document):
    response = client.get(download_url(document))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_a_missing_document_or_file_is_a_404(client, admin_user, document):
    client.force_login(admin_user)
    assert client.get(reverse("admin:knowledge_document_download", args=[document.pk + 1])).status_code == 404
    document.file.storage.delete(document.file.name)
    assert client.get(download_url(document)).status_code == 404


def test_the_change_page_links_the_file_to_the_download(client, admin_user, document):
    client.force_login(admin_user)
    html = client.get(reverse("admin:knowledge_document_change", args=[document.pk])).content.decode()
    assert f'href="{download_url(document)}"' in html
    assert "/media/" not in html


def test_media_is_served_in_development_only(client, settings, document):
    import config.urls

    path = f"{settings.MEDIA_URL}{document.file.name}"
    assert path.startswith("/media/")
    assert client.get(path).status_code == 404
    try:
        with override_settings(DEBUG=True):
            importlib.reload(config.urls)
            clear_url_caches()
            response = client.get(path)
            assert response.status_code == 200
            assert b"".join(response.streaming_content) == CONTENT
    finally:
        importlib.reload(config.urls)
        clear_url_caches()
