"""Upload that tells the truth per file, and the JSON the upload page's script reads: a result
per file, each document's status afterwards, and JSON errors (never an HTML page)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from apps.knowledge.documents import add_document
from apps.knowledge.models import Document
from apps.knowledge.pipeline import process_document

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_in_tmp")]

UPLOAD = "/admin/knowledge/document/upload/"
STATUS = "/admin/knowledge/document/status/"
JSON = {"Accept": "application/json"}


def text_file(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/plain")


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(email="clerk@example.com", username="clerk", is_staff=True)


def test_the_urls():
    assert reverse("admin:knowledge_document_upload") == UPLOAD
    assert reverse("admin:knowledge_document_status") == STATUS


def test_each_file_gets_its_result_and_the_rest_of_the_batch_goes_on(admin_client_):
    files = [
        text_file("notes.txt", b"Meeting notes\n\nThe budget was approved.\n"),
        text_file("empty.txt", b""),
        text_file("program.exe", b"MZ\x90\x00"),
        text_file("copy of notes.txt", b"Meeting notes\n\nThe budget was approved.\n"),
        text_file("ideas.md", b"# Ideas\n\nA search page people can use.\n"),
    ]

    response = admin_client_.post(UPLOAD, {"files": files}, headers=JSON)

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    results = response.json()["results"]
    assert [(r["name"], r["ok"], r.get("code")) for r in results] == [
        ("notes.txt", True, None),
        ("empty.txt", False, "empty"),
        ("program.exe", False, "unsupported_type"),
        ("copy of notes.txt", False, "duplicate"),
        ("ideas.md", True, None),
    ]
    notes, ideas = Document.objects.get(title="notes"), Document.objects.get(title="ideas")
    assert results[0] == {
        "name": "notes.txt",
        "ok": True,
        "message": "queued",
        "id": notes.pk,
        "status": "pending",
        "url": f"/admin/knowledge/document/{notes.pk}/change/",
    }
    assert results[1]["message"] == "the file is empty (0 bytes)"
    assert results[2]["message"].startswith("unsupported file type .exe; supported: .txt, .md")
    # A duplicate links to the document that already holds the content.
    assert results[3]["id"] == notes.pk and results[3]["url"] == results[0]["url"]
    assert "already in the knowledge base as “notes”" in results[3]["message"]
    assert results[4]["id"] == ideas.pk
    assert Document.objects.count() == 2


def test_without_the_script_each_file_gets_a_message(admin_client_):
    files = [text_file("empty.txt", b""), text_file("notes.txt", b"Some notes.\n")]
    response = admin_client_.post(UPLOAD, {"files": files}, follow=True)
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "empty.txt: the file is empty (0 bytes)",
        "notes.txt: queued",
    ]
    assert list(Document.objects.values_list("title", flat=True)) == ["notes"]


def test_no_files_is_a_json_error(admin_client_):
    response = admin_client_.post(UPLOAD, {}, headers=JSON)
    assert response.status_code == 400
    assert response.json() == {"error": "No files received: choose one or more files to upload."}


def test_a_logged_out_script_gets_json_not_the_login_page(client):
    response = client.post(UPLOAD, {"files": [text_file("a.txt", b"a")]}, headers=JSON)
    assert response.status_code == 401 and "log in" in response.json()["error"]
    response = client.get(STATUS, {"ids": "1"}, headers=JSON)
    assert response.status_code == 401 and "log in" in response.json()["error"]
    # A browser (no JSON asked) is sent to the login page as before.
    assert client.get(UPLOAD)["Location"].startswith(reverse("admin:login"))


def test_staff_without_the_add_permission_get_a_json_403(client, staff):
    client.force_login(staff)
    response = client.post(UPLOAD, {"files": [text_file("a.txt", b"a")]}, headers=JSON)
    assert response.status_code == 403
    assert response.json() == {"error": "You do not have permission to add documents."}
    assert client.get(UPLOAD).status_code == 403
    assert not Document.objects.exists()


def test_a_refused_csrf_token_is_a_json_error(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(UPLOAD, {"files": [text_file("a.txt", b"a")]}, headers=JSON)
    assert response.status_code == 403 and response["Content-Type"] == "application/json"
    assert response.json()["error"] == "The page's security token was refused: reload the page and try again."
    assert not Document.objects.exists()


def test_too_many_files_in_one_request_is_a_json_error(admin_client_, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = [text_file(f"{n}.txt", f"note {n}".encode()) for n in range(3)]
    response = admin_client_.post(UPLOAD, {"files": files}, headers=JSON)
    assert response.status_code == 400
    assert response.json() == {"error": "Too many files in one request (at most 2): send fewer at a time."}


def test_the_upload_page_tells_its_script_where_to_post_and_poll(admin_client_):
    page = admin_client_.get(UPLOAD).content.decode()
    assert f'action="{UPLOAD}"' in page and f'data-status-url="{STATUS}"' in page
    assert 'data-max-files="100"' in page


# -- status ---------------------------------------------------------------------------------------


def test_status_follows_each_document_to_ready_or_failed(admin_client_, make_client):
    good = add_document(name="notes.md", data=b"# Notes\n\nThe budget was approved.\n")
    # Passes the upload checks (type, size), fails extraction: a PNG named .txt.
    bad = add_document(name="picture.txt", data=b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)

    response = admin_client_.get(STATUS, {"ids": f"{good.pk},{bad.pk},999999"}, headers=JSON)
    body = response.json()
    assert response.status_code == 200
    assert [(d["id"], d["status"], d["error"]) for d in body["documents"]] == [
        (good.pk, "pending", ""),
        (bad.pk, "pending", ""),
    ]
    assert body["missing"] == [999999]

    client = make_client()
    process_document(good.pk, client=client)
    process_document(bad.pk, client=client)

    documents = admin_client_.get(STATUS, {"ids": f"{good.pk},{bad.pk}"}).json()["documents"]
    ready, failed = documents
    assert ready["status"] == "ready" and ready["chunk_count"] == ready["chunks_done"] >= 1
    assert ready["url"] == f"/admin/knowledge/document/{good.pk}/change/" and ready["title"] == "notes"
    assert failed["status"] == "failed" and "picture" in failed["error"] and "PNG" in failed["error"]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ("", "ids: give the document ids, comma-separated (e.g. ids=3,5,8)"),
        ("3,x", "ids: not a comma-separated list of document ids: '3,x'"),
        (",".join(["1"] * 501), "ids: at most 500 documents per request, got 501"),
    ],
)
def test_status_with_bad_ids_is_a_json_error(admin_client_, ids, message):
    response = admin_client_.get(STATUS, {"ids": ids}, headers=JSON)
    assert response.status_code == 400 and response.json() == {"error": message}


def test_status_needs_the_view_permission(client, staff):
    document = add_document(name="notes.txt", data=b"Some notes.\n")
    client.force_login(staff)
    response = client.get(STATUS, {"ids": str(document.pk)}, headers=JSON)
    assert response.status_code == 403
    assert response.json() == {"error": "You do not have permission to view documents."}
    staff.user_permissions.add(Permission.objects.get(codename="view_document"))
    response = client.get(STATUS, {"ids": str(document.pk)}, headers=JSON)
    assert response.status_code == 200 and response.json()["documents"][0]["id"] == document.pk


def test_the_documents_list_shows_why_a_document_failed(admin_client_, make_client):
    bad = add_document(name="picture.txt", data=b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    process_document(bad.pk, client=make_client())
    bad.refresh_from_db()
    assert bad.status == "failed" and bad.error_message

    page = admin_client_.get(reverse("admin:knowledge_document_changelist")).content.decode()
    assert "failure reason" in page.lower()
    assert f'<span title="{bad.error_message}" class="knowledge-reason">' in page
