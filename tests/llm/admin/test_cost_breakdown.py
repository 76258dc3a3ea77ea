"""The request detail page shows how a call's cost was computed, from the breakdown stored with it."""

from __future__ import annotations

import re
from decimal import Decimal as D

import pytest

from apps.llm.accounting.records import SUCCESS, CallRecord
from apps.llm.accounting.request_log import write_records
from apps.llm.admin.formatting import money
from apps.llm.admin.request_log import breakdown_table
from apps.llm.costs import calculate_cost, usage_with_request
from apps.llm.models import LLMRequest
from apps.llm.money import usd_precise
from apps.llm.types import Usage
from tests.llm.pricing.catalogs import AUG_2026, parsed

LOG = "/admin/llm/llmrequest/"


@pytest.mark.django_db
def test_request_detail_shows_how_the_cost_was_computed(staff_client):
    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "manual", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        },
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {}}],
        },
    ]
    usage = usage_with_request(
        Usage(prompt_tokens=5000, cache_write_tokens=4000, completion_tokens=10, web_search_requests=1), messages
    )
    breakdown = calculate_cost(parsed(AUG_2026)["anthropic/claude-sonnet-4.5"], usage)
    record = CallRecord(
        endpoint="chat",
        provider="openrouter",
        requested_model="anthropic/claude-sonnet-4.5",
        model="anthropic/claude-sonnet-4.5",
        status=SUCCESS,
        usage=usage,
        cost=breakdown.total,
        cost_breakdown=breakdown.lines(),
    )
    write_records([record])
    row = LLMRequest.objects.get(pk=record.id)
    assert row.cost_breakdown == breakdown.lines()
    assert (row.cache_write_1h_tokens, row.input_images, row.web_search_requests) == (4000, 1, 1)

    html = staff_client.get(f"{LOG}{record.id}/change/").content.decode()
    assert "How this cost was computed" in html
    table = re.search(r'<table class="llm-cost-breakdown".*?</table>', html, re.S)
    assert table is not None
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", table[0], re.S)]
    rows = [cells[i : i + 4] for i in range(0, len(cells), 4)]
    # Amounts as the admin's formatter writes them; unit prices exact (per million tokens for tokens).
    assert rows == [
        ["Input", "1,000 tokens", f"{usd_precise(D('3'))} / M tokens", money(D("0.003"))],
        ["Cache write (1 hour)", "4,000 tokens", f"{usd_precise(D('6'))} / M tokens", money(D("0.024"))],
        ["Input images", "1 image", f"{usd_precise(D(0))} / image", money(D(0))],
        ["Output", "10 tokens", f"{usd_precise(D('15'))} / M tokens", money(D("0.00015"))],
        ["Web searches", "1 search", f"{usd_precise(D('0.01'))} / search", money(D("0.01"))],
    ]


def test_a_line_priced_at_a_fallback_says_so():
    lines = [
        {
            "component": "input_cache_read",
            "quantity": "40",
            "unit": "token",
            "unit_price": "0.000001",
            "priced_as": "prompt",
            "amount": "0.00004",
        }
    ]
    html = breakdown_table(lines)
    assert "Cached input (read)" in html and "(at the prompt price)" in html


def test_no_breakdown():
    assert breakdown_table(None) == breakdown_table([]) == "—"
