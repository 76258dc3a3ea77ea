import logging
from collections.abc import Callable
from functools import update_wrapper
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, SuspiciousOperation, TooManyFilesSent
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from unfold.admin import ModelAdmin

from apps.knowledge.conf import knowledge_settings
from apps.knowledge.documents import megabytes
from apps.knowledge.forms import SearchForm, UploadForm
from apps.knowledge.models import Chunk, Document
from apps.knowledge.pipeline import reprocess
from apps.knowledge.search import retrieve_documents
from apps.knowledge.upload_batch import add_files, parse_ids, statuses
from apps.knowledge.uploads import CappedUploadHandler
from apps.llm.admin import LLMCostMixin
from apps.llm.admin.base import QuerystringGuard
from apps.llm.errors import LLMError
from apps.llm.money import usd

logger = logging.getLogger(__name__)

STATUS_COLOURS = {"pending": "#6b7280", "processing": "#2563eb", "ready": "#16a34a", "failed": "#dc2626"}
#: Characters of a failure reason shown in the documents list (all of it on hover and on the page).
REASON_CHARS = 120


def wants_json(request: HttpRequest) -> bool:
    """The upload page's script asks for JSON; a plain form post (no script) does not."""
    return "application/json" in request.headers.get("Accept", "")


def json_error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def download_name(document: Document) -> str:
    """The name the file was uploaded as: the title defaults to its stem, while the stored name
    was made safe for the file system (spaces, punctuation) and may carry a de-duplicating suffix."""
    suffix = PurePath(document.file.name).suffix
    return document.title if document.title.lower().endswith(suffix.lower()) else f"{document.title}{suffix}"


@admin.register(Document)
class DocumentAdmin(LLMCostMixin, QuerystringGuard, ModelAdmin):
    # "llm_cost" (LLMCostMixin): the calls logged about the document, from the request log.
    list_display = [
        "title",
        "status_badge",
        "progress_display",
        "reason_display",
        "chunk_count",
        "token_count",
        "embedding_model",
        "cost_display",
        "llm_cost",
        "size_display",
        "uploaded_by",
        "created_at",
    ]
    list_filter = ["status", "mime_type", "embedding_model"]
    search_fields = ["title", "content_hash"]
    date_hierarchy = "created_at"
    actions = ["reprocess_documents"]
    readonly_fields = [
        "content_hash",
        "mime_type",
        "size",
        "status",
        "error_message",
        "warnings",
        "chunk_count",
        "chunks_done",
        "token_count",
        "embedding_model",
        "embedding_cost",
        "attempts",
        "uploaded_by",
        "created_at",
        "updated_at",
        "processing_started_at",
        "processed_at",
    ]
    change_list_template = "admin/knowledge/document/change_list.html"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Document) -> str:
        colour = STATUS_COLOURS.get(obj.status, "#6b7280")
        title = obj.error_message or ""
        return format_html(
            '<span title="{}" style="background:{};color:#fff;border-radius:9px;padding:1px 8px;'
            'font-size:11px">{}</span>',
            title,
            colour,
            obj.get_status_display(),
        )

    @admin.display(description="progress")
    def progress_display(self, obj: Document) -> str:
        if not obj.chunk_count:
            return "—"
        return format_html(
            '<progress max="{}" value="{}" style="width:80px"></progress> {}/{}',
            obj.chunk_count,
            obj.chunks_done,
            obj.chunks_done,
            obj.chunk_count,
        )

    @admin.display(description="failure reason")
    def reason_display(self, obj: Document) -> str:
        if not obj.error_message:
            return ""
        shown = obj.error_message
        if len(shown) > REASON_CHARS:
            shown = shown[: REASON_CHARS - 1].rstrip() + "…"
        return format_html('<span title="{}" class="knowledge-reason">{}</span>', obj.error_message, shown)

    @admin.display(description="embedding cost", ordering="embedding_cost")
    def cost_display(self, obj: Document) -> str:
        return usd(obj.embedding_cost)

    @admin.display(description="size", ordering="size")
    def size_display(self, obj: Document) -> str:
        return f"{obj.size / 1024:.0f} KB" if obj.size < 1024 * 1024 else f"{obj.size / 1024 / 1024:.1f} MB"

    @admin.action(description="Re-embed selected documents")
    def reprocess_documents(self, request: HttpRequest, queryset) -> None:
        # Imported here: the actor module declares its queue on the broker when imported.
        from apps.knowledge.tasks import enqueue_document

        ids = list(queryset.exclude(status=Document.Status.PROCESSING).values_list("pk", flat=True))
        count = reprocess(Document.objects.filter(pk__in=ids))
        for pk in ids:
            enqueue_document(pk)
        self.message_user(request, f"{count} documents queued for processing.", messages.SUCCESS)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("upload/", self._json_aware(self.upload_view), name="knowledge_document_upload"),
            path("status/", self._json_aware(self.status_view), name="knowledge_document_status"),
            path("search/", view(self.search_view), name="knowledge_document_search"),
            path("<int:object_id>/download/", view(self.download_view), name="knowledge_document_download"),
            *super().get_urls(),
        ]

    def get_exclude(self, request: HttpRequest, obj: Document | None = None) -> list[str]:
        # The stored file is replaced by uploading, never in the form; ``file_link`` shows it.
        return [*(super().get_exclude(request, obj) or []), "file"]

    def get_readonly_fields(self, request: HttpRequest, obj: Document | None = None) -> list[str]:
        return ["file_link", *super().get_readonly_fields(request, obj)]

    @admin.display(description="file")
    def file_link(self, obj: Document) -> str:
        if not obj.pk or not obj.file:
            return "—"
        url = reverse("admin:knowledge_document_download", args=[obj.pk])
        return format_html('<a href="{}">{}</a> ({})', url, download_name(obj), self.size_display(obj))

    def download_view(self, request: HttpRequest, object_id: int) -> FileResponse:
        """The stored file, as an attachment with its original name: staff with view permission only
        (media is not served publicly outside development)."""
        document = get_object_or_404(Document, pk=object_id)
        if not self.has_view_permission(request, document):
            raise PermissionDenied
        try:
            stored = document.file.open("rb")
        except (FileNotFoundError, ValueError):
            raise Http404(f"The file of document {document.pk} is missing from storage.") from None
        return FileResponse(stored, as_attachment=True, filename=download_name(document))

    def _json_aware(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        """``admin_view(view)``, except that a request asking for JSON (the upload page's script)
        gets JSON whatever happens: a logged-out user, a refused token, a request too large, a
        server error each get ``{"error": message}`` with their status, never an HTML page."""
        wrapped = self.admin_site.admin_view(view)

        def json_aware(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not wants_json(request):
                return wrapped(request, *args, **kwargs)
            if not self.admin_site.has_permission(request):
                return json_error("You are logged out (or your session expired): reload the page and log in.", 401)
            try:
                response = wrapped(request, *args, **kwargs)
            except PermissionDenied:
                return json_error("You do not have permission to do this.", 403)
            except TooManyFilesSent:
                limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
                return json_error(f"Too many files in one request (at most {limit}): send fewer at a time.", 400)
            except SuspiciousOperation as problem:
                return json_error(f"The request was refused: {problem}", 400)
            except Exception:
                logger.exception("%s failed", request.path)
                return json_error("The server failed (the error is logged); try again.", 500)
            if response.get("Content-Type", "").startswith("application/json"):
                return response
            if response.status_code == 403:  # the CSRF check's page
                return json_error("The page's security token was refused: reload the page and try again.", 403)
            return json_error(f"Unexpected answer from the server (HTTP {response.status_code}).", 500)

        # The attributes too: a CSRF-exempt view stays exempt.
        return update_wrapper(json_aware, wrapped)

    @method_decorator(csrf_exempt)  # checked below, once the size-capping upload handler is in place
    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        # Adding means uploading: one or many files, each becoming a document.
        return self.upload_view(request)

    @method_decorator(csrf_exempt)  # checked below, once the size-capping upload handler is in place
    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            if wants_json(request):
                return json_error("You do not have permission to add documents.", 403)
            raise PermissionDenied
        capped = None
        if request.method == "POST":
            # Before anything reads the body: CSRF's check reads the form, files and all.
            capped = CappedUploadHandler.install(request, knowledge_settings().max_upload_bytes)
        return csrf_protect(self._upload)(request, capped)

    def _upload(self, request: HttpRequest, capped: CappedUploadHandler | None) -> HttpResponse:
        rejected = capped.rejected if capped else []
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and (form.is_valid() or rejected):
            files = form.cleaned_data["files"] if form.is_valid() else []
            results = add_files(files, rejected=rejected, user=request.user)
            if wants_json(request):
                return JsonResponse({"results": results})
            for result in results:
                level = messages.SUCCESS if result["ok"] else messages.ERROR
                self.message_user(request, f"{result['name']}: {result['message']}", level)
            return HttpResponseRedirect(reverse("admin:knowledge_document_changelist"))
        if request.method == "POST" and wants_json(request):
            return json_error("No files received: choose one or more files to upload.", 400)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": "Upload documents",
            "max_upload": megabytes(knowledge_settings().max_upload_bytes),
            "max_upload_bytes": knowledge_settings().max_upload_bytes,
            "max_files": settings.DATA_UPLOAD_MAX_NUMBER_FILES,
        }
        return render(request, "admin/knowledge/document/upload.html", context)

    def status_view(self, request: HttpRequest) -> JsonResponse:
        """``?ids=3,5,8`` -> each document's status, for the upload page to follow its files."""
        if not self.has_view_permission(request):
            return json_error("You do not have permission to view documents.", 403)
        try:
            ids = parse_ids(request.GET.get("ids", ""))
        except ValueError as problem:
            return json_error(str(problem), 400)
        documents, missing = statuses(ids)
        return JsonResponse({"documents": documents, "missing": missing})

    def search_view(self, request: HttpRequest) -> HttpResponse:
        """The search page: documents with their best passages. View permission on documents:
        the results show their text."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = SearchForm(request.GET or None)
        results, error, keyword_url = None, "", ""
        if form.is_valid():
            data = form.cleaned_data
            mode = data["mode"] or None
            try:
                results = retrieve_documents(
                    data["q"],
                    data["k"] or 10,
                    mode=mode,
                    ef_search=data["ef_search"],
                    documents=form.documents(),
                    user=request.user,
                )
            except LLMError as problem:
                logger.warning("Knowledge search failed: %s", problem)
                error = f"The query could not be embedded, so the search by meaning failed: {problem}"
                keyword_url = "?" + urlencode({**request.GET.dict(), "mode": "keyword"})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "results": results,
            "error": error,
            "keyword_url": keyword_url,
            "title": "Search the knowledge base",
        }
        return render(request, "admin/knowledge/document/search.html", context)


@admin.register(Chunk)
class ChunkAdmin(QuerystringGuard, ModelAdmin):
    list_display = ["document", "index", "token_count", "embedding_model"]
    list_filter = ["embedding_model"]
    search_fields = ["text", "document__title"]
    list_select_related = ["document"]
    exclude = ["embedding"]
    readonly_fields = ["document", "index", "text", "token_count", "start_char", "end_char", "embedding_model"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
