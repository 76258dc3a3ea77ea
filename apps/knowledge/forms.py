from typing import Any

from django import forms
from django.db.models import QuerySet

from apps.knowledge.conf import knowledge_settings
from apps.knowledge.extraction import SUPPORTED_TYPES
from apps.knowledge.models import Document


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that takes several files (Django's documented pattern)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        single = super().clean
        return [single(item, initial) for item in data] if isinstance(data, list | tuple) else [single(data, initial)]


class UploadForm(forms.Form):
    # The form metaclass moves declared fields into base_fields: this does not shadow BaseForm.files.
    files = MultipleFileField(  # type: ignore[assignment]  # django-stubs does not model the metaclass
        label="Files",
        help_text="Text, Markdown, HTML, PDF or Word (.docx) files.",
        # An empty file is refused by itself, with its own result line: the form refusing it
        # would refuse the whole batch.
        allow_empty_file=True,
    )


MODE_CHOICES = [
    ("hybrid", "Hybrid: words and meaning"),
    ("vector", "Meaning only (vector)"),
    ("keyword", "Words only (keyword)"),
]
#: The document types a search can be narrowed to: one entry per MIME type, named by its extensions.
TYPE_CHOICES = [
    ("", "Any type"),
    *(
        (mime, ", ".join(ext for ext, of in SUPPORTED_TYPES.items() if of == mime))
        for mime in dict.fromkeys(SUPPORTED_TYPES.values())
    ),
]
STATUS_CHOICES = [("", "Any status"), *Document.Status.choices]


class SearchForm(forms.Form):
    q = forms.CharField(
        label="Search the documents",
        max_length=2000,
        widget=forms.TextInput(
            attrs={"type": "search", "autofocus": True, "placeholder": 'words, "an exact phrase", -excluded'}
        ),
    )
    mode = forms.ChoiceField(label="Mode", choices=MODE_CHOICES, required=False, initial="hybrid")
    k = forms.IntegerField(label="Documents", min_value=1, max_value=50, initial=10, required=False)
    ef_search = forms.IntegerField(
        label="ef_search",
        min_value=1,
        max_value=1000,
        required=False,
        help_text="Vector search: higher finds more of the true nearest chunks, slower.",
    )
    mime_type = forms.ChoiceField(label="Type", choices=TYPE_CHOICES, required=False)
    status = forms.ChoiceField(
        label="Status",
        choices=STATUS_CHOICES,
        required=False,
        help_text="A document being processed again keeps its previous chunks until it is ready.",
    )

    #: The fields under "advanced": the section opens when one of them is set.
    ADVANCED = ("mode", "k", "ef_search", "mime_type", "status")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # An empty box means the default: say which.
        self.fields["k"].widget.attrs["placeholder"] = "10"
        self.fields["ef_search"].widget.attrs["placeholder"] = str(knowledge_settings().ef_search)

    def advanced_set(self) -> bool:
        return self.is_bound and any(self.data.get(name) for name in self.ADVANCED)

    def documents(self) -> QuerySet[Document] | None:
        """The documents to search, by the filters; None for all."""
        filters = {name: self.cleaned_data[name] for name in ("mime_type", "status") if self.cleaned_data.get(name)}
        return Document.objects.filter(**filters) if filters else None
