"""The database request log: every ``CallRecord`` becomes an ``LLMRequest`` row, exactly once.

``DatabaseRecorder.record()`` costs the LLM call a line appended to a spool file (so a crash
or a database outage loses nothing) and a queue put; a background thread writes batches.
Each batch is one transaction: ``INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id``, then
the daily rollups of just the rows that were new. Replaying a spool file twice therefore
changes nothing the second time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    close_old_connections,
    connections,
    transaction,
)

from apps.llm.accounting.records import CallRecord
from apps.llm.conf import llm_settings
from apps.llm.types import Usage

logger = logging.getLogger(__name__)


def record_to_json(record: CallRecord) -> str:
    data = asdict(record)
    data["usage"] = record.usage.model_dump(mode="json")
    return json.dumps(data, default=str, ensure_ascii=False)


def record_from_json(line: str) -> CallRecord:
    data = json.loads(line)
    data["usage"] = Usage.model_validate(data["usage"])
    for field in ("cost", "provider_cost", "saved_cost"):
        if data[field] is not None:
            data[field] = Decimal(data[field])
    data["id"] = uuid.UUID(data["id"])
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    return CallRecord(**data)


def _clip(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def write_records(
    records: list[CallRecord], *, using: str = "default", store_text: bool = False, text_limit: int = 20_000
) -> int:
    """Insert the records not already logged and add them to the rollups; returns how many were new."""
    from apps.llm.accounting import rollups
    from apps.llm.models import LLMRequest

    if not records:
        return 0
    rows = [LLMRequest.from_call(r, store_text=store_text, clip=lambda t: _clip(t, text_limit)) for r in records]
    fields = list(LLMRequest._meta.concrete_fields)
    columns = ", ".join(connections[using].ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        inserted: set[uuid.UUID] = set()
        # Chunked to stay well below PostgreSQL's 65535 parameters per statement.
        step = max(1, 60_000 // len(fields))
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            values = ", ".join([f"({placeholders})"] * len(chunk))
            params = [f.get_db_prep_save(f.pre_save(row, add=True), connection) for row in chunk for f in fields]
            cursor.execute(
                f"INSERT INTO {LLMRequest._meta.db_table} ({columns}) VALUES {values} "
                f"ON CONFLICT (id) DO NOTHING RETURNING id",
                params,
            )
            inserted.update(row[0] for row in cursor.fetchall())
        new = [r for r in records if r.id in inserted]
        rollups.add(new, cursor=cursor)
    return len(new)


class DatabaseRecorder:
    """Writes call records to the request log in the background; never raises to the caller."""

    def __init__(
        self,
        spool_dir: Path,
        *,
        using: str = "default",
        store_text: bool = False,
        text_limit: int = 20_000,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        linger: float = 0.05,
        retry_interval: float = 2.0,
    ):
        self.spool_dir = spool_dir
        self.using = using
        self.store_text = store_text
        self.text_limit = text_limit
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.linger = linger
        self.retry_interval = retry_interval
        self._lock = threading.Condition()
        self._pending: list[CallRecord] = []
        self._in_flight = 0
        self._spool_file: TextIO | None = None
        self._spool_path: Path | None = None
        self._segment = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.written = 0
        self.failures = 0

    # -- the caller's side: cheap and infallible ------------------------------------------

    def record(self, call: CallRecord) -> None:
        if not self.store_text:
            # Text that may not be stored must not reach the spool file on disk either.
            call = replace(call, prompt=None, response_text=None)
        line = record_to_json(call) + "\n"
        with self._lock:
            spool = self._spool()
            spool.write(line)
            spool.flush()  # in the OS's hands now: survives a crash of this process
            self._pending.append(call)
            self._ensure_thread()
            self._lock.notify()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything recorded so far is in the database; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and not self._in_flight, timeout)

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._stopping = True
            self._lock.notify()

    # -- spool segments ---------------------------------------------------------------------

    def _spool(self) -> TextIO:
        if self._spool_file is None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self._segment += 1
            self._spool_path = self.spool_dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}-{self._segment}.jsonl"
            # Kept open across calls (one append per record); closed when the segment is done.
            self._spool_file = open(self._spool_path, "a", encoding="utf-8")  # noqa: SIM115
        return self._spool_file

    def _take_batch(self) -> tuple[list[CallRecord], Path | None]:
        """Up to ``batch_size`` records; when that empties the buffer, the spool segment too."""
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        finished_segment = None
        if not self._pending and self._spool_file is not None:
            self._spool_file.close()
            finished_segment, self._spool_file = self._spool_path, None
        self._in_flight = len(batch)
        return batch, finished_segment

    # -- the writer thread --------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="llm-request-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            connections.close_all()  # this thread's own connections

    def _loop(self) -> None:
        done_segments: list[Path] = []
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._pending or self._stopping, self.flush_interval)
                if self._stopping and not self._pending:
                    return
                # Linger a moment so that busy periods are written in batches, not row by row.
                self._lock.wait_for(lambda: len(self._pending) >= self.batch_size or self._stopping, self.linger)
                batch, segment = self._take_batch()
            if segment is not None:
                done_segments.append(segment)
            self._write(batch)
            with self._lock:
                self._in_flight = 0
                if not self._pending:
                    for path in done_segments:
                        path.unlink(missing_ok=True)
                    done_segments.clear()
                self._lock.notify_all()

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
        pid = int(path.name.split("-", 1)[0])
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
