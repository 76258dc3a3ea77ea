"""The upload size limit, enforced while the request body streams in.

Django's handlers would otherwise receive a whole file (in memory up to
``FILE_UPLOAD_MAX_MEMORY_SIZE``, then in a temporary file) before anything could look at its
size. ``CappedUploadHandler`` goes first in the request's handler chain and cuts a file off at the
cap: the handlers after it never get more than the cap of any file, and the rest of that file is
read from the socket and dropped. The other files of the request go through.
"""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest

from apps.knowledge.documents import too_large
from apps.knowledge.extraction import ExtractionError


class CappedUploadHandler(FileUploadHandler):
    """Skips each file of the request past ``limit`` bytes and records why in ``rejected``."""

    def __init__(self, request: HttpRequest, limit: int):
        super().__init__(request)
        self.limit = limit
        self.rejected: list[ExtractionError] = []

    @classmethod
    def install(cls, request: HttpRequest, limit: int) -> CappedUploadHandler:
        """Put a handler first on ``request``; before anything (the CSRF check too) reads the body."""
        handler = cls(request, limit)
        # Django's setter refuses (AttributeError) once the body has been parsed.
        request.upload_handlers = [handler, *request.upload_handlers]
        return handler

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        # A part may declare its length (browsers do not). Refused with its first chunk, not here:
        # skipping before the next handlers have opened this file would close their previous one.
        self.declared_too_large = self.content_length is not None and self.content_length > self.limit

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if self.declared_too_large or start + len(raw_data) > self.limit:
            self.rejected.append(too_large(self.file_name or "file"))
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler makes the file
