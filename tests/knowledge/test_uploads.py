"""The upload limit: stated in the unit of its setting, and enforced while the file streams in."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.urls import reverse

from apps.knowledge.documents import MB, check_upload
from apps.knowledge.extraction import ExtractionError
from apps.knowledge.models import Document

LIMIT = 25 * MB  # KNOWLEDGE_MAX_UPLOAD_MB's default


class CountingHandler(FileUploadHandler):
    """Placed after the size cap: counts the bytes of each file that reach the handlers that store it."""

    received: dict[str, int] = {}

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        CountingHandler.received[self.file_name] = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        CountingHandler.received[self.file_name] += len(raw_data)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


@pytest.fixture
def counting(settings):
    CountingHandler.received = {}
    settings.FILE_UPLOAD_HANDLERS = [f"{__name__}.CountingHandler", *settings.FILE_UPLOAD_HANDLERS]
    return CountingHandler.received


def test_the_limit_is_said_in_the_unit_of_its_setting():
    with pytest.raises(ExtractionError) as refused:
        check_upload("big.pdf", 30 * MB)
    assert str(refused.value) == "big.pdf: 30 MB is over the 25 MB upload limit"
    check_upload("exactly.pdf", LIMIT)


@pytest.mark.django_db
@pytest.mark.usefixtures("media_in_tmp")
@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_an_upload_over_the_limit_is_cut_off_while_it_streams(client, admin_user, counting, accept):
    client.force_login(admin_user)
    big = SimpleUploadedFile("big.txt", b"x" * (LIMIT + 3 * MB), content_type="text/plain")
    small = SimpleUploadedFile("small.txt", b"a small note\n", content_type="text/plain")

    response = client.post(
        reverse("admin:knowledge_document_upload"), {"files": [small, big]}, headers={"Accept": accept}, follow=True
    )

    assert response.status_code == 200
    if accept == "application/json":
        results = {r["name"]: r for r in response.json()["results"]}
        assert results["big.txt"] == {
            "name": "big.txt",
            "ok": False,
            "code": "too_large",
            "message": "the file is over the 25 MB upload limit",
        }
        assert results["small.txt"]["ok"]
    else:
        shown = [str(m) for m in response.context["messages"]]
        assert "big.txt: the file is over the 25 MB upload limit" in shown
        assert "small.txt: queued" in shown
    # The handlers that store files never got more of the big one than the limit.
    assert 0 < counting["big.txt"] <= LIMIT
    assert counting["small.txt"] == len(b"a small note\n")
    assert list(Document.objects.values_list("title", flat=True)) == ["small"]


@pytest.mark.django_db
@pytest.mark.usefixtures("media_in_tmp")
def test_the_add_form_is_capped_too_and_checks_csrf(admin_user, counting):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    page = client.get(reverse("admin:knowledge_document_add"))
    assert "Up to 25 MB each" in page.content.decode()
    token = page.cookies["csrftoken"].value

    # The CSRF check reads the form from the body: through the cap too.
    big = SimpleUploadedFile("big.md", b"y" * (LIMIT + 1), content_type="text/markdown")
    assert client.post(reverse("admin:knowledge_document_add"), {"files": [big]}).status_code == 403
    assert 0 < counting["big.md"] <= LIMIT

    big.seek(0)
    response = client.post(
        reverse("admin:knowledge_document_add"), {"files": [big], "csrfmiddlewaretoken": token}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["big.md: the file is over the 25 MB upload limit"]
    assert not Document.objects.exists()
