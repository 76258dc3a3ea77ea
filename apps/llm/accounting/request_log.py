"""The database request log: every ``CallRecord`` becomes an ``LLMRequest`` row, exactly once.

``DatabaseRecorder.record()`` costs the call a line appended to the spool (``spool.py``: a
crash of the process loses nothing) and a queue append: no lock, no database. A background
thread writes what is queued in batches. Each batch is one transaction: the rows are copied
(``COPY``) into a temporary table, moved with ``INSERT ... ON CONFLICT (id) DO NOTHING
RETURNING id``, and only the rows that were new are added to the daily rollups, one statement
per rollup table. Replaying a spool file twice therefore changes nothing the second time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import cache, partial
from pathlib import Path
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    close_old_connections,
    connections,
    models,
    transaction,
)
from psycopg.types.json import Jsonb

from apps.llm.accounting.records import CallRecord, log_values
from apps.llm.accounting.spool import SpoolFile, record_from_json, record_to_json, segment_pid
from apps.llm.conf import llm_settings

logger = logging.getLogger(__name__)

#: The session-local table a batch is copied into before it is merged into the log.
_STAGING = "llm_request_incoming"
#: Log columns that hold text (cleared unless text may be stored).
_TEXT_COLUMNS = frozenset({"prompt", "response", "tool_calls"})


def _clip(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


#: How a record's value becomes its column's: convert(value, store_text, text_limit).
Converter = Callable[[Any, bool, int], Any]


def _json(value: Any, store_text: bool, limit: int) -> Any:
    return None if value is None else Jsonb(value)


def _clipped(value: Any, store_text: bool, limit: int) -> Any:
    return _clip(value, limit) if isinstance(value, str) else value


def _array(value: Any, store_text: bool, limit: int) -> Any:
    return list(value)  # psycopg sends a list, not a tuple, as an array


def _text(convert: Converter) -> Converter:
    """Prompt, answer and tool calls: kept only where text may be stored."""
    return lambda value, store_text, limit: convert(value, store_text, limit) if store_text else None


def _cut_to(length: int, *, null: bool) -> Converter:
    """Text cut to its column's length; a None stored as "" where the column takes no NULL (a request id)."""
    if null:
        return lambda value, store_text, limit: value[:length] if isinstance(value, str) else value
    return lambda value, store_text, limit: (value or "")[:length]


_SPECIAL: dict[str, Converter] = {
    "attempts": lambda value, store_text, limit: min(value, 32767),  # a smallint
}


@cache
def _row_plan() -> tuple[tuple[str, ...], Callable[[CallRecord], tuple[Any, ...]], tuple[tuple[int, Converter], ...]]:
    """The log's columns, the getter of a record's values for them, and the (position, converter)
    of the columns whose value is not stored as the record holds it."""
    from apps.llm.models import LLMRequest

    fields = LLMRequest._meta.concrete_fields
    plan: list[tuple[int, Converter]] = []
    for position, f in enumerate(fields):
        convert: Converter | None
        if f.attname in _SPECIAL:
            convert = _SPECIAL[f.attname]
        elif isinstance(f, models.JSONField):
            convert = _json
        elif isinstance(f, ArrayField):
            convert = _array
        elif isinstance(f, models.TextField):
            convert = _clipped
        elif isinstance(f, models.CharField) and f.max_length:
            convert = _cut_to(f.max_length, null=f.null)
        else:
            convert = None
        if f.attname in _TEXT_COLUMNS:
            convert = _text(convert or (lambda value, store_text, limit: value))
        if convert is not None:
            plan.append((position, convert))
    columns = tuple(f.attname for f in fields)
    return columns, log_values(columns), tuple(plan)


def log_row(record: CallRecord, *, store_text: bool, text_limit: int) -> list[Any]:
    """The values of a record's ``LLMRequest`` row, in column order: text only if ``store_text``,
    long text clipped to ``text_limit``, names cut to their columns' lengths."""
    _, values_of, conversions = _row_plan()
    values = list(values_of(record))
    for position, convert in conversions:
        values[position] = convert(values[position], store_text, text_limit)
    return values


def write_records(
    records: list[CallRecord], *, using: str = "default", store_text: bool = False, text_limit: int = 20_000
) -> int:
    """Insert the records not already logged and add them to the rollups; returns how many were new."""
    from apps.llm.accounting import rollups, traces
    from apps.llm.models import LLMRequest

    if not records:
        return 0
    table = LLMRequest._meta.db_table
    columns = ", ".join(_row_plan()[0])
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} (LIKE {table}) ON COMMIT DELETE ROWS")
        with cursor.cursor.copy(f"COPY {_STAGING} ({columns}) FROM STDIN") as copy:
            for record in records:
                copy.write_row(log_row(record, store_text=store_text, text_limit=text_limit))
        # The staging table is emptied as the rows move: an enclosing transaction may write another batch.
        cursor.execute(
            f"WITH batch AS (DELETE FROM {_STAGING} RETURNING *) "
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM batch "
            f"ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        inserted = {row[0] for row in cursor.fetchall()}
        new = [r for r in records if r.id in inserted]
        rollups.add(new, cursor=cursor)
        traces.add(new, cursor=cursor)
    return len(new)


class DatabaseRecorder:
    """Writes call records to the request log in the background; never raises to the caller.

    ``linger``: how long the writer lets records gather before writing them (a batch per
    ``linger`` under load, not a transaction per call). ``segment_bytes``: the spool segment
    is replaced by a fresh one when it grows past this, and whenever the writer catches up.
    """

    def __init__(
        self,
        spool_dir: Path,
        *,
        using: str = "default",
        store_text: bool = False,
        text_limit: int = 20_000,
        batch_size: int = 500,
        linger: float = 0.25,
        retry_interval: float = 2.0,
        segment_bytes: int = 8 * 1024 * 1024,
    ):
        self.spool_dir = Path(spool_dir)
        self.using = using
        self.store_text = store_text
        self.text_limit = text_limit
        self.batch_size = batch_size
        self.linger = linger
        self.retry_interval = retry_interval
        self.segment_bytes = segment_bytes
        self.written = 0
        self.failures = 0
        self._reset()
        os.register_at_fork(after_in_child=partial(_after_fork, weakref.ref(self)))

    def _reset(self) -> None:
        self._queue: deque[CallRecord] = deque()
        self._spool: SpoolFile | None = None
        self._writing = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._written = threading.Condition()
        self._wake = threading.Event()  # flush() does not wait out the linger

    def _after_fork(self) -> None:
        # The parent's queue, spool segment and writer thread are not the child's: it starts afresh.
        if self._spool is not None:
            self._spool.close()
        self._reset()

    # -- the caller's side: cheap and infallible ------------------------------------------

    def record(self, call: CallRecord) -> None:
        if self._thread is None:
            self._start()
        assert self._spool is not None
        line = record_to_json(call, store_text=self.store_text) + "\n"
        if self.store_text and call.prompt is not None:
            # The caller may go on to edit its messages (append the answer, ...): log them as sent.
            call = replace(call, prompt=json.loads(json.dumps(call.prompt, default=str)))
        # Queued before it is spooled: a spool line always belongs to a record queued earlier
        # (see _loop), so a segment can be deleted once the queue it saw is written.
        self._queue.append(call)
        self._spool.append(line)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything recorded so far is in the database; False on timeout."""
        self._wake.set()
        with self._written:
            return self._written.wait_for(lambda: not self._queue and not self._writing, timeout)

    def close(self) -> None:
        """Write what is queued and stop the writer (a later ``record()`` starts a new one)."""
        self.flush()
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
            if not thread.is_alive():
                with self._start_lock:
                    self._thread, self._stopping = None, False

    # -- the writer thread --------------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._spool = SpoolFile(self.spool_dir)
                thread = threading.Thread(target=self._run, name="llm-request-log", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            connections.close_all()  # this thread's own connections

    def _loop(self) -> None:
        assert self._spool is not None
        # Segments left behind, each with the count of records that must be written before it
        # can go: the records queued when it was left (their lines are in it, or in a later one).
        left: deque[tuple[Path, int]] = deque()
        written = 0
        while True:
            if len(self._queue) < self.batch_size:
                self._wake.wait(self.linger)  # let a batch gather; flush() and close() cut it short
                self._wake.clear()
            if self._queue:
                self._writing = True  # before taking records: flush() never sees them in neither place
                batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                self._write(batch)
                written += len(batch)
                with self._written:
                    self._writing = False
                    self._written.notify_all()
            while left and left[0][1] <= written:
                left.popleft()[0].unlink(missing_ok=True)
            if self._stopping and not self._queue:
                self._spool.close()
                self._spool.path.unlink(missing_ok=True)
                return
            size = self._spool.size()
            if size > self.segment_bytes or (size and not self._queue):
                path = self._spool.rotate()
                left.append((path, written + len(self._queue)))

    def _write(self, batch: list[CallRecord]) -> None:
        """Write ``batch``, waiting out database outages; set aside a record the database refuses."""
        while True:
            try:
                close_old_connections()
                self.written += write_records(
                    batch, using=self.using, store_text=self.store_text, text_limit=self.text_limit
                )
                return
            except (IntegrityError, DataError):
                # The database refused the data itself: find the culprit instead of retrying forever.
                if len(batch) > 1:
                    middle = len(batch) // 2
                    self._write(batch[:middle])
                    self._write(batch[middle:])
                    return
                logger.exception("Request log record %s refused; set aside in %s", batch[0].id, self.dead_letters)
                self.dead_letters.parent.mkdir(parents=True, exist_ok=True)
                with open(self.dead_letters, "a", encoding="utf-8") as fh:
                    fh.write(record_to_json(batch[0]) + "\n")
                return
            except DatabaseError:
                # Unreachable, or not migrated yet: the records are safe in the spool; try again.
                self.failures += 1
                logger.warning("Request log unavailable; %d records kept for retry", len(batch), exc_info=True)
                connections[self.using].close()
                time.sleep(self.retry_interval)

    @property
    def dead_letters(self) -> Path:
        return self.spool_dir / "refused.jsonl.bad"


def replay_spool(
    spool_dir: Path, *, using: str = "default", store_text: bool = False, skip_pids: Iterable[int] = ()
) -> tuple[int, int]:
    """Write the records of spool files left by processes that are gone; (files, new rows)."""
    import psutil

    files = rows = 0
    skip = {os.getpid(), *skip_pids}
    for path in sorted(spool_dir.glob("*.jsonl")):
        pid = segment_pid(path)
        if pid in skip or psutil.pid_exists(pid):
            continue  # its own writer is on it
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = []
        for line in lines:
            try:
                records.append(record_from_json(line))
            except (ValueError, KeyError, TypeError):
                logger.error("Unreadable line in %s kept aside: %.200s", path, line)
                with open(path.with_suffix(".bad"), "a", encoding="utf-8") as bad:
                    bad.write(line + "\n")
        rows += write_records(records, using=using, store_text=store_text)
        path.unlink()
        files += 1
    return files, rows


def _after_fork(recorder: weakref.ref[DatabaseRecorder]) -> None:
    if (alive := recorder()) is not None:
        alive._after_fork()


class SyncDatabaseRecorder:
    """Writes each record in the calling thread and transaction (tests, scripts)."""

    def __init__(self, *, using: str = "default", store_text: bool = False, text_limit: int = 20_000):
        self.using, self.store_text, self.text_limit = using, store_text, text_limit

    def record(self, call: CallRecord) -> None:
        write_records([call], using=self.using, store_text=self.store_text, text_limit=self.text_limit)

    def flush(self, timeout: float = 0) -> bool:
        return True


_default: DatabaseRecorder | SyncDatabaseRecorder | None = None
_default_lock = threading.Lock()


def default_recorder() -> DatabaseRecorder | SyncDatabaseRecorder | None:
    """The process-wide request-log recorder the ``LLM`` setting asks for (None: "off")."""
    global _default
    config = llm_settings()
    if config.request_log == "off":
        return None
    with _default_lock:
        if _default is None:
            if config.request_log == "sync":
                _default = SyncDatabaseRecorder(store_text=config.store_text, text_limit=config.text_limit)
            else:
                _default = DatabaseRecorder(
                    config.spool_dir, store_text=config.store_text, text_limit=config.text_limit
                )
                import atexit

                atexit.register(_default.close)
        return _default
