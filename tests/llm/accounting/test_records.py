"""The one definition of a call record, and what derives from it."""

from __future__ import annotations

from apps.llm.accounting.records import COLUMN_GROUPS, LOG_COLUMNS, SUMMARY_COLUMNS
from apps.llm.models import LLMRequest


def test_the_request_log_has_exactly_the_columns_of_a_record():
    assert sorted(f.attname for f in LLMRequest._meta.concrete_fields) == sorted(LOG_COLUMNS)


def test_the_detail_page_groups_show_every_column_once():
    shown = [column for columns in COLUMN_GROUPS.values() for column in columns]
    assert sorted(shown) == sorted(LOG_COLUMNS)


def test_the_call_tables_show_columns_of_the_log():
    assert set(SUMMARY_COLUMNS) <= set(LOG_COLUMNS)
