from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin

from apps.knowledge.documents import DuplicateDocument, add_document
from apps.knowledge.extraction import ExtractionError
from apps.knowledge.forms import SearchForm, UploadForm
from apps.knowledge.highlight import highlight
from apps.knowledge.models import Chunk, Document
from apps.knowledge.pipeline import reprocess
from apps.knowledge.search import retrieve
from apps.llm.errors import LLMError

STATUS_COLOURS = {"pending": "#6b7280", "processing": "#2563eb", "ready": "#16a34a", "failed": "#dc2626"}


def upload_files(request: HttpRequest, files) -> list[dict]:
    """Add each file; one result line per file, never an exception for one bad file."""
    results = []
    for upload in files:
        try:
            document = add_document(name=upload.name, data=upload.read(), user=request.user)
            results.append({"name": upload.name, "ok": True, "id": document.pk, "message": "queued"})
        except (ExtractionError, DuplicateDocument) as problem:
            results.append({"name": upload.name, "ok": False, "message": str(problem)})
    return results


@admin.register(Document)
class DocumentAdmin(ModelAdmin):
    list_display = [
        "title",
        "status_badge",
        "progress_display",
        "chunk_count",
        "token_count",
        "embedding_model",
        "cost_display",
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

    @admin.display(description="embedding cost", ordering="embedding_cost")
    def cost_display(self, obj: Document) -> str:
        return "—" if obj.embedding_cost is None else f"${obj.embedding_cost:.6f}"

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
            path("upload/", view(self.upload_view), name="knowledge_document_upload"),
            path("search/", view(self.search_view), name="knowledge_document_search"),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        # Adding means uploading: one or many files, each becoming a document.
        return self.upload_view(request)

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            return HttpResponse(status=403)
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            results = upload_files(request, form.cleaned_data["files"])
            if request.headers.get("Accept") == "application/json":
                return JsonResponse({"results": results})
            for result in results:
                level = messages.SUCCESS if result["ok"] else messages.ERROR
                self.message_user(request, f"{result['name']}: {result['message']}", level)
            return HttpResponseRedirect(reverse("admin:knowledge_document_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": "Upload documents",
        }
        return render(request, "admin/knowledge/document/upload.html", context)

    def search_view(self, request: HttpRequest) -> HttpResponse:
        form = SearchForm(request.GET or None)
        hits, error, cost = [], "", None
        if form.is_valid():
            query = form.cleaned_data["q"]
            try:
                results = retrieve(
                    query, form.cleaned_data["k"] or 10, ef_search=form.cleaned_data["ef_search"], user=request.user
                )
                hits = [{"hit": h, "html": highlight(h.text, query)} for h in results.hits]
                cost = results.cost
            except (LLMError, ValueError) as problem:
                error = str(problem)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "hits": hits,
            "error": error,
            "cost": cost,
            "title": "Search the knowledge base",
        }
        return render(request, "admin/knowledge/document/search.html", context)


@admin.register(Chunk)
class ChunkAdmin(ModelAdmin):
    list_display = ["document", "index", "token_count", "embedding_model"]
    list_filter = ["embedding_model"]
    search_fields = ["text", "document__title"]
    list_select_related = ["document"]
    exclude = ["embedding"]
    readonly_fields = ["document", "index", "text", "token_count", "start_char", "end_char", "embedding_model"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
