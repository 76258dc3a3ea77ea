"""Extraction of the parsed formats in a child process held to memory and CPU limits.

A .docx or a PDF is compressed: a 1.4 MB file can expand to gigabytes of XML or page content, and
the parsers (lxml through python-docx, pypdf) build it all in memory. Run in the worker itself, one
such file held a worker for minutes at several GB. Here the parsing runs in a fresh interpreter
(``python -m apps.knowledge.extraction.sandbox``) whose address space (``RLIMIT_AS``) and CPU time
(``RLIMIT_CPU``) are capped before it reads the file, with a wall-clock timeout on top: a bomb
fails with a "too large" ``ExtractionError`` in bounded time and memory, and the worker lives on.

    extracted, usage = extract_text_limited("report.docx", data, max_bytes=..., limits=ExtractionLimits())

Plain text (``.txt``, ``.md``) is decoded in the calling process: it does not expand, its cost is
linear in the upload limit, and a process per file would dominate the ingestion of small files.

The child reads the file on stdin and writes one JSON object on stdout (never a pickle: its
input is untrusted).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath

from apps.knowledge.extraction.errors import ErrorCode, ExtractionError, _size
from apps.knowledge.extraction.extract import ExtractedText, extract_text

#: The extensions parsed in the child; the others expand to at most their own size.
ISOLATED_TYPES = frozenset({".pdf", ".docx", ".html", ".htm"})
#: Where ``python -m apps...`` finds the ``apps`` package.
_PROJECT_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class ExtractionLimits:
    #: Address space of the child (RLIMIT_AS), interpreter and parsers included.
    memory_bytes: int = 1024 * 1024 * 1024
    #: CPU seconds (RLIMIT_CPU), and the wall-clock timeout.
    seconds: int = 120


@dataclass(frozen=True)
class ChildUsage:
    """What the child used, as it reported it (``None``: it was killed before it could)."""

    peak_rss_bytes: int | None
    wall_seconds: float
    isolated: bool


class IsolatedExtractionError(ExtractionError):
    """An ``ExtractionError`` from the child, with what the child used (``usage``)."""

    def __init__(self, code: ErrorCode, message: str, *, filename: str, usage: ChildUsage) -> None:
        super().__init__(code, message, filename=filename)
        self.usage = usage


def extract_text_limited(
    name: str, data: bytes, *, max_bytes: int, limits: ExtractionLimits
) -> tuple[ExtractedText, ChildUsage]:
    """``extract_text``, in a limited child process for the formats that expand.

    Raises ``ExtractionError`` as ``extract_text`` does (``IsolatedExtractionError``, with the
    child's usage, when the child reported it), and with code ``too_large`` when the child runs
    out of memory or time; ``RuntimeError`` if the child fails in any other way.
    """
    if PurePath(name).suffix.lower() not in ISOLATED_TYPES:
        started = time.perf_counter()
        extracted = extract_text(name, data, max_bytes=max_bytes)
        return extracted, ChildUsage(None, time.perf_counter() - started, isolated=False)

    display = PurePath(name).name or name
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", __name__, display, str(max_bytes), str(limits.memory_bytes), str(limits.seconds)],
        cwd=_PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = child.communicate(data, timeout=limits.seconds + 5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise _out_of_time(display, limits) from None
    wall = time.perf_counter() - started
    if child.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise _out_of_time(display, limits)
    if child.returncode < 0:
        # C code (lxml, zlib, the interpreter) that meets a failed allocation may crash rather than
        # raise; so may a reader on a malformed file.
        crash = signal.Signals(-child.returncode).name
        raise ExtractionError(
            "corrupt",
            f"{display}: the file could not be read: the reader crashed ({crash}); the file is damaged "
            f"or too large for the {_size(limits.memory_bytes)} memory limit",
            filename=display,
        )
    try:
        report = json.loads(out)
    except ValueError:
        detail = err.decode(errors="replace").strip()[-2000:] or f"exit status {child.returncode}"
        raise RuntimeError(f"{display}: the extraction process failed: {detail}") from None
    usage = ChildUsage(report.get("peak_rss_bytes"), wall, isolated=True)
    if "error" in report:
        error = report["error"]
        raise IsolatedExtractionError(error["code"], error["message"], filename=error["filename"], usage=usage)
    return ExtractedText(**report["extracted"]), usage


def _out_of_time(display: str, limits: ExtractionLimits) -> ExtractionError:
    return ExtractionError(
        "too_large",
        f"{display}: too large or too complex to extract: more than {limits.seconds} s",
        filename=display,
    )


def _too_much_memory(display: str, memory_bytes: int) -> ExtractionError:
    return ExtractionError(
        "too_large",
        f"{display}: too large to extract: it needs more than {_size(memory_bytes)} of memory",
        filename=display,
    )


def _run_child(display: str, max_bytes: int, memory_bytes: int, seconds: int) -> dict:
    # Limits first, before a byte of the file is read.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))
    data = sys.stdin.buffer.read()
    try:
        try:
            extracted = extract_text(display, data, max_bytes=max_bytes)
        except MemoryError:
            raise _too_much_memory(display, memory_bytes) from None
        except ExtractionError as error:
            # A reader that took a failed allocation for damage.
            if error.code == "corrupt" and _caused_by_memory(error):
                raise _too_much_memory(display, memory_bytes) from None
            raise
    except ExtractionError as error:
        report: dict = {"error": {"code": error.code, "message": str(error), "filename": error.filename}}
    else:
        report = {"extracted": asdict(extracted)}
    report["peak_rss_bytes"] = _peak_rss()
    return report


def _peak_rss() -> int:
    """This process's peak resident memory, in bytes."""
    # VmHWM is this program's own: ru_maxrss carries the parent's peak over fork and exec.
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _caused_by_memory(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, MemoryError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


if __name__ == "__main__":
    name, max_bytes, memory_bytes, seconds = sys.argv[1], *map(int, sys.argv[2:5])
    # Built before the limits apply: when memory runs out outside the extractor (reading stdin,
    # writing the report) there may be nothing left to build it with.
    out_of_memory = json.dumps(
        {"error": {"code": "too_large", "message": str(_too_much_memory(name, memory_bytes)), "filename": name}}
    ).encode()
    try:
        sys.stdout.write(json.dumps(_run_child(name, max_bytes, memory_bytes, seconds)))
        sys.stdout.flush()
    except MemoryError:
        os.write(1, out_of_memory)
