"""How extraction fails: the error callers see, the one the format readers raise, and the wording
of sizes and counts in messages and warnings.

The underscored names are shared by the modules of this package; nothing outside it uses them.
"""

from __future__ import annotations

from typing import Literal

ErrorCode = Literal["unsupported_type", "empty", "too_large", "binary", "no_text_layer", "encrypted", "corrupt"]


class ExtractionError(ValueError):
    """The document cannot be turned into text; ``str(exc)`` says why, naming the file.

    ``code`` is stable for programs (one of ``ErrorCode``); the message is for people.
    """

    def __init__(self, code: ErrorCode, message: str, *, filename: str = "") -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.filename = filename


class _Refused(Exception):
    """Raised inside the format readers; turned into an ExtractionError naming the file."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code: ErrorCode = code
        self.detail = detail


def _size(n: int) -> str:
    if n < 1024:
        return _plural(n, "byte")
    value = n / 1024
    for unit in ("KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.1f}".rstrip("0").rstrip(".") + f" {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
