from typing import Any

from django import forms


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
        label="Files", help_text="Text, Markdown, HTML, PDF or Word (.docx) files."
    )


class SearchForm(forms.Form):
    q = forms.CharField(label="Search", max_length=2000)
    k = forms.IntegerField(label="Results", min_value=1, max_value=100, initial=10, required=False)
    ef_search = forms.IntegerField(
        label="ef_search",
        min_value=1,
        max_value=1000,
        required=False,
        help_text="Higher finds more of the true nearest chunks, slower.",
    )
