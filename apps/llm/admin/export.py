"""The request log as CSV: the calls of the changelist's filters and search, streamed and bounded.

The columns are the log's own (``COLUMN_GROUPS``, in the order of the detail page), so a column
added to the log is exported without a change here. Amounts are exact (``plain_decimal``, as
every CSV of the project writes them, never rounded for reading). The prompt and the answer
leave the database only for users holding ``TEXT_PERMISSION``; API keys never reach the log
(it holds a fingerprint).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db.models import DecimalField, QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from apps.llm.accounting.records import COLUMN_GROUPS
from apps.llm.models import LLMRequest
from apps.llm.pricing.sheets import plain_decimal

#: Most calls one export holds; the file's last line says when more matched.
MAX_EXPORT_ROWS = 100_000
#: Rows fetched per round trip of the server-side cursor.
CHUNK_SIZE = 2_000
#: Who may export what people wrote to the models and what they answered. Superusers have it;
#: others once the model declares it (see the README).
TEXT_PERMISSION = "llm.view_llmrequest_text"
#: The columns holding the prompt and the answer (and the tool calls of the answer).
TEXT_COLUMNS: tuple[str, ...] = COLUMN_GROUPS["Prompt and answer"]
#: Cells a spreadsheet would run as a formula: such text is written with a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_columns(*, with_text: bool) -> list[str]:
    """The request-log columns of an export, in the detail page's order; the text only ``with_text``."""
    return [
        column for columns in COLUMN_GROUPS.values() for column in columns if with_text or column not in TEXT_COLUMNS
    ]


def money_columns() -> frozenset[str]:
    return frozenset(f.attname for f in LLMRequest._meta.concrete_fields if isinstance(f, DecimalField))


def header(columns: Sequence[str]) -> list[str]:
    """Column names as in the log; amounts are named ``<column>_usd`` as in the dashboard's exports."""
    amounts = money_columns()
    return [f"{column}_usd" if column in amounts else column for column in columns]


def cell(value: Any) -> str:
    """A value of the log as CSV text: amounts exact, times ISO 8601, JSON as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, int | UUID):
        return str(value)
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def export_rows(queryset: QuerySet, columns: Sequence[str], *, limit: int = MAX_EXPORT_ROWS) -> Iterator[list[str]]:
    """The header, then up to ``limit`` calls of ``queryset`` in its order; a last line says when more matched."""
    yield header(columns)
    rows = queryset.values_list(*columns)[: limit + 1].iterator(chunk_size=CHUNK_SIZE)
    for count, row in enumerate(rows, start=1):
        if count > limit:
            yield [f"# cut at {limit:,} rows: more calls match; narrow the filters (e.g. the days) for the rest"]
            return
        yield [cell(value) for value in row]


class _Lines:
    """What ``csv.writer`` writes to: each line is handed back instead of kept."""

    def write(self, line: str) -> str:
        return line


def csv_lines(rows: Iterable[list[str]]) -> Iterator[str]:
    writer = csv.writer(_Lines())
    for row in rows:
        yield writer.writerow(row)


def csv_response(queryset: QuerySet, *, with_text: bool, limit: int = MAX_EXPORT_ROWS) -> StreamingHttpResponse:
    """The calls of ``queryset`` as a streamed CSV download (rows are read as the client receives them)."""
    rows = export_rows(queryset, export_columns(with_text=with_text), limit=limit)
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="llm-requests-{timezone.now():%Y%m%d-%H%M%S}.csv"'
    return response
