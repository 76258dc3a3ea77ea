"""The request log's spool: each call record, as a line of JSON, on disk before it reaches the database.

Callers append with one ``write()`` to a file opened ``O_APPEND``: the kernel appends each
write whole, so concurrent callers need no lock, and a line is in the operating system's
hands once ``append`` returns. A crash of the process therefore loses no record; the file is
not fsynced, so a crash of the machine can lose the lines of records the writer had not yet
committed to the database (it commits every few tens of milliseconds).

The writer thread swaps the file under the callers with ``dup2``: the descriptor they write to
keeps its number and atomically starts pointing at a fresh segment, so a caller never writes
to a closed or reused descriptor. A segment is deleted once every record appended to it is in
the database; a segment left behind by a dead process is replayed (``replay_spool``), and
replaying a record that did reach the database changes nothing.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from pathlib import Path
from typing import Any

from apps.llm.accounting.records import CallRecord
from apps.llm.types import Usage

#: Record fields that hold prompt or answer text: kept out of the spool unless text may be stored.
TEXT_FIELDS = frozenset({"prompt", "response_text", "tool_calls"})
_MONEY_FIELDS = ("cost", "provider_cost", "saved_cost")
_ID_FIELDS = ("trace_id", "span_id")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_WRITTEN_APART = {"id", "created_at", "usage", *_MONEY_FIELDS, *_ID_FIELDS}


def _line_fields(store_text: bool) -> tuple[tuple[str, ...], Callable[[CallRecord], tuple], tuple[Any, ...]]:
    """The fields written as they are: their names, one getter of their values, and their defaults."""
    chosen = [
        f for f in fields(CallRecord) if f.name not in _WRITTEN_APART and (store_text or f.name not in TEXT_FIELDS)
    ]
    return tuple(f.name for f in chosen), attrgetter(*(f.name for f in chosen)), tuple(f.default for f in chosen)


_LINE_FIELDS = {store_text: _line_fields(store_text) for store_text in (False, True)}
_MONEY_AND_IDS = attrgetter(*_MONEY_FIELDS, *_ID_FIELDS)
# One encoder for every line (json.dumps with options builds a new one per call); str() is the
# fallback for values in caller-supplied metadata that JSON has no type for.
_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode


def record_to_json(record: CallRecord, *, store_text: bool = True) -> str:
    """One line of the spool: the record's fields that differ from their defaults.

    Written on the caller's thread for every call, so it is kept to plain values: the id as
    hex, the time as integer microseconds since the epoch, amounts and ids as text.
    """
    names, values_of, defaults = _LINE_FIELDS[store_text]
    # A default is usually the very object (None, False, ""): the identity test spares most comparisons.
    data: dict[str, Any] = {
        name: value
        for name, value, default in zip(names, values_of(record), defaults, strict=True)
        if value is not default and value != default
    }
    data["id"] = record.id.hex
    data["created_at"] = (record.created_at - _EPOCH) // _MICROSECOND
    for name, value in zip(_MONEY_FIELDS + _ID_FIELDS, _MONEY_AND_IDS(record), strict=True):
        if value is not None:
            data[name] = value.hex if isinstance(value, uuid.UUID) else str(value)
    # A pydantic model's __dict__ holds its field values: no model_dump() on the caller's path.
    counts = {name: value for name, value in record.usage.__dict__.items() if value}
    if counts:
        data["usage"] = counts
    return _encode(data)


def record_from_json(line: str) -> CallRecord:
    data = json.loads(line)
    data["usage"] = Usage.model_validate(data.get("usage") or {})
    for name in _MONEY_FIELDS:
        if data.get(name) is not None:
            data[name] = Decimal(data[name])
    data["tags"] = tuple(data.get("tags", ()))
    for name in _ID_FIELDS:
        if data.get(name) is not None:
            data[name] = uuid.UUID(data[name])
    data["id"] = uuid.UUID(data["id"])
    created = data["created_at"]
    # Lines of earlier releases (still in a segment a crashed process left) carry ISO 8601 text.
    data["created_at"] = (
        _EPOCH + created * _MICROSECOND if isinstance(created, int) else datetime.fromisoformat(created)
    )
    return CallRecord(**data)


class SpoolFile:
    """The segment callers append to, named ``<pid>-<random>-<n>.jsonl`` in ``directory``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._segment = 0
        self.path, self._fd = self._open()

    def append(self, line: str) -> None:
        data = line.encode()
        written = os.write(self._fd, data)
        while written < len(data):  # only when the disk fills up or a signal interrupts
            written += os.write(self._fd, data[written:])

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def rotate(self) -> Path:
        """Point the callers' descriptor at a new segment; returns the path of the one it leaves."""
        old = self.path
        self.path, fd = self._open()
        os.dup2(fd, self._fd)
        os.close(fd)
        return old

    def close(self) -> None:
        os.close(self._fd)

    def _open(self) -> tuple[Path, int]:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._segment += 1
        path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}-{self._segment}.jsonl"
        return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


def segment_pid(path: Path) -> int:
    """The id of the process that wrote a segment."""
    return int(path.name.split("-", 1)[0])
