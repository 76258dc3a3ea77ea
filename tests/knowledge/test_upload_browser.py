"""The upload and search pages in a real browser: Playwright driving Debian's Chromium against the
live server, the documents processed for real (local MiniLM) while the page follows them."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.knowledge.models import Document
from apps.knowledge.pipeline import process_document

PASSWORD = "browser-test-password"
GOOD = b"Meeting notes\n\nThe budget for the greenhouse was approved by the committee.\n"
MORE = b"# Ideas\n\nA search page people can use, with snippets and positions.\n"
#: Passes the upload checks (name, size) and fails in the worker: a PNG named .txt.
PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("media_in_tmp")]

#: Every file's line once the server has answered for it.
ANSWERED = """() => {
    const lines = [...document.querySelectorAll('#upload-results li')];
    return lines.length > 0 && lines.every(li => !['waiting', 'uploading'].includes(li.dataset.state));
}"""
LINES = """() => [...document.querySelectorAll('#upload-results li')].map(li => ({
    name: li.querySelector('.knowledge-upload-name').textContent,
    state: li.dataset.state,
    text: li.querySelector('.knowledge-upload-state').textContent,
    link: li.querySelector('a.knowledge-open')?.getAttribute('href') ?? null,
}))"""


@pytest.fixture
def page(live_server, browser, django_user_model):
    django_user_model.objects.create_superuser(email="uploader@example.com", password=PASSWORD, username="uploader")
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "uploader@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
    return page


def by_name(lines: list[dict]) -> dict[str, dict]:
    return {line["name"]: line for line in lines}


def test_an_empty_file_is_refused_by_itself_and_the_others_are_queued_and_followed(live_server, page, make_client):
    page.goto(f"{live_server.url}/admin/knowledge/document/upload/")
    page.set_input_files(
        "#upload-form input[type=file]",
        files=[
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": GOOD},
            {"name": "empty.txt", "mimeType": "text/plain", "buffer": b""},
            {"name": "ideas.md", "mimeType": "text/markdown", "buffer": MORE},
            {"name": "picture.txt", "mimeType": "text/plain", "buffer": PICTURE},
        ],
    )
    page.click("#upload-button")
    page.wait_for_function(ANSWERED, timeout=20_000)

    lines = by_name(page.evaluate(LINES))
    assert list(lines) == ["notes.txt", "empty.txt", "ideas.md", "picture.txt"]  # one line per file
    assert lines["empty.txt"]["state"] == "refused"
    assert lines["empty.txt"]["text"] == "refused: the file is empty (0 bytes)"
    for name in ("notes.txt", "ideas.md", "picture.txt"):
        assert lines[name]["state"] in ("queued", "pending"), lines[name]
        assert lines[name]["link"].startswith("/admin/knowledge/document/")
    assert page.inner_text("#upload-summary") == "3 queued, 1 refused." or "Processing" in page.inner_text(
        "#upload-summary"
    )
    # Nothing discarded: the three good files are documents.
    documents = {d.title: d for d in Document.objects.all()}
    assert set(documents) == {"notes", "ideas", "picture"}
    assert lines["notes.txt"]["link"] == f"/admin/knowledge/document/{documents['notes'].pk}/change/"

    # A worker's part, done here: the page follows each document to its end by polling.
    client = make_client()
    for document in documents.values():
        process_document(document.pk, client=client)
    page.wait_for_function(
        """() => [...document.querySelectorAll('#upload-results li')]
            .filter(li => li.dataset.state !== 'refused')
            .every(li => ['ready', 'failed'].includes(li.dataset.state))""",
        timeout=20_000,
    )
    lines = by_name(page.evaluate(LINES))
    assert lines["notes.txt"]["state"] == "ready" and lines["notes.txt"]["text"].startswith("ready: 1 chunks")
    assert lines["ideas.md"]["state"] == "ready"
    assert lines["picture.txt"]["state"] == "failed"
    assert lines["picture.txt"]["text"] == f"failed: {Document.objects.get(title='picture').error_message}"
    assert lines["picture.txt"]["link"] == f"/admin/knowledge/document/{documents['picture'].pk}/change/"
    page.wait_for_function(
        "() => document.querySelector('#upload-summary').textContent === 'All uploaded documents are processed.'",
        timeout=10_000,
    )


def test_the_search_page_has_a_visible_query_box_and_shows_marked_results(live_server, page, make_client):
    from apps.knowledge.documents import add_document

    document = add_document(name="notes.txt", data=GOOD)
    process_document(document.pk, client=make_client())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")

    page.goto(f"{live_server.url}/admin/knowledge/document/search/")
    box = page.get_by_label("Search the documents")
    assert box.is_visible()
    # Drawn as a box: Unfold's reset leaves bare inputs borderless, invisible on the page.
    assert page.evaluate("() => getComputedStyle(document.querySelector('#id_q')).borderTopWidth") != "0px"
    assert box.bounding_box()["width"] > 300
    assert not page.get_by_label("Mode").is_visible()  # folded under Advanced
    page.click("summary:has-text('Advanced')")
    assert page.get_by_label("Mode").is_visible()

    box.fill("greenhouse budget")
    # By words: the query embedding goes through the process-wide client, and words are what is marked.
    page.select_option("#id_mode", "keyword")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    result = page.locator("#search-results li.knowledge-result").first
    assert result.locator("h3 a").inner_text() == "notes"
    assert sorted(result.locator("mark").all_inner_texts()) == ["budget", "greenhouse"]
    assert "characters 0–" in result.locator(".knowledge-position").inner_text()

    assert page.locator("details.knowledge-advanced").get_attribute("open") is not None  # a mode was chosen
    box = page.get_by_label("Search the documents")
    box.fill("zeppelin")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    assert "No document matches “zeppelin”." in page.inner_text("#search-empty")
