"""Money everywhere through one formatter (apps/llm/money.py): no page, dashboard or CSV of the LLM
admin shows a money value with more than 8 significant digits, nor a raw 24-decimal amount.

The rule these tests check
--------------------------

*Pages* (every changelist, detail page, inline and form of the LLM app, and the dashboard): a
*money value* is any number written with a dollar sign and, since a leaked raw ``Decimal``
carries none (``0.019392000000000000000000``), any number with a decimal point in the text a
person reads or in a form field's value. Each has at most 8 significant digits *as written*
(leading zeros do not count; after the decimal point trailing zeros do, so the 24-place column
as it is fails; in whole-dollar amounts trailing zeros do not). Not read: ``<script>`` and
``<style>`` (the charts' JSON holds floats for Chart.js; its labels are drawn by
static/llm/dashboard.js, checked in tests/browser), attributes other than a field's value, and
the stored prompt and answer text (what a user wrote, not a figure). The admin shows no other
decimals (rates and latencies have at most one decimal place), so the rule has no exceptions.

*CSV exports*: exactness wins over brevity. Every money cell (a column named ``*usd*``) is the
exact decimal text of the amount: never rounded, no trailing zeros, no exponent
(``plain_decimal``), so ``Decimal(cell)`` is the amount to the last digit; it is as long as the
exact sum of the stored costs needs (a sum of sub-cent costs can need more than 8 digits, and a
finance team reconciling a bill needs all of them). What has no exact decimal (an average, a
share: a quotient) is rounded to 8 significant digits. The exactness of the amounts is checked
here against the raw log for the headline, and against the calls themselves in
tests/llm/admin/test_dashboard.py.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.db.models import Sum
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from apps.llm.accounting.records import ERROR, REFUSED, SUCCESS, CallRecord
from apps.llm.accounting.request_log import write_records
from apps.llm.admin.dashboard import EXPORTS
from apps.llm.admin.formatting import UsdField, money
from apps.llm.dashboard import rollup_today
from apps.llm.models import Budget, BudgetSpend, LLMRequest
from apps.llm.money import parse_usd, percent, round_significant, significant_digits, usd, usd_precise
from apps.llm.pricing.sheets import plain_decimal
from apps.llm.types import Usage
from tests.llm.dashboard.seeded import DASHBOARD, LOG

MAX_DIGITS = 8

# -- the formatter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, shown",
    [
        (None, "—"),
        ("0", "$0"),
        ("0E-24", "$0"),
        ("0.019392000000000000000000", "$0.0194"),
        ("1234.5678", "$1,234.57"),
        ("1", "$1.00"),
        ("0.5", "$0.50"),
        ("0.05", "$0.05"),
        ("0.075", "$0.075"),
        ("0.000021", "$0.000021"),
        ("0.0000045", "$0.0000045"),
        ("0.00018513", "$0.0001851"),
        ("0.0099996", "$0.01"),  # rounds up to a cent: shown as one
        ("0.99996", "$1.00"),
        ("999999.994", "$999,999.99"),
        ("12345678.9", "$12,345,679"),  # whole dollars from a million
        ("123456789.4", "$123,456,790"),  # 8 significant digits at most
        ("-0.0012", "-$0.0012"),
        ("-5.5", "-$5.50"),
        ("0.000000000000000000000001", "$0.000000000000000000000001"),  # never 1E-24
    ],
)
def test_usd(value, shown):
    assert usd(None if value is None else Decimal(value)) == shown
    assert money(None if value is None else Decimal(value)) == shown


def test_usd_signed_precise_and_percent():
    assert usd(Decimal("0.0012"), signed=True) == "+$0.0012" and usd(Decimal("-0.0012"), signed=True) == "-$0.0012"
    assert usd(Decimal(0), signed=True) == "$0"
    assert usd_precise(Decimal("1.125")) == "$1.125" and usd_precise(Decimal("0.000000150000")) == "$0.00000015"
    assert usd_precise(Decimal("12500")) == "$12,500" and usd_precise(Decimal("0.123456789")) == "$0.12345679"
    assert percent(Decimal("0.0123")) == "1.23%" and percent(Decimal("-0.05"), signed=True) == "-5.00%"
    assert percent(0.5, places=1) == "50.0%" and percent(Decimal("0.00001"), signed=True) == "+<0.01%"
    assert percent(None) == "—"
    assert round_significant(Decimal("0.123456789")) == Decimal("0.12345679")
    assert significant_digits(Decimal("0.019392000000000000000000")) == 5


@pytest.mark.parametrize(
    "text, value", [("1234.5", "1234.5"), ("$1,234.50", "1234.50"), (" $ 0.02 ", "0.02"), ("-$5", "-5"), ("$-5", "-5")]
)
def test_parse_usd(text, value):
    assert parse_usd(text) == Decimal(value)


@pytest.mark.parametrize("text", ["abc", ".", "1e5", "$", "1.2.3", "--5"])
def test_parse_usd_refuses_what_is_not_an_amount(text):
    with pytest.raises(ValueError):
        parse_usd(text)


def test_the_limit_field_shows_and_takes_dollars():
    field = UsdField(required=False, max_digits=32, decimal_places=24)
    assert field.widget.format_value(Decimal("0.019392000000000000000000")) == "0.019392"
    assert field.widget.format_value(Decimal("100.000000000000000000000000")) == "100"
    assert field.clean("$1,200.50") == Decimal("1200.50") and field.clean("") is None
    for wrong in ("ten", "-1", "0.123456789"):  # not an amount, negative, more than 8 digits
        with pytest.raises(Exception, match=r"amount|zero or more|significant"):
            field.clean(wrong)


# -- what pages and CSVs show ----------------------------------------------------------------------

#: A number as written on a page: an optional dollar sign, digits with thousands separators, a
#: fraction. Not inside a word, nor a piece of a dotted sequence ("1.2.3", an address).
NUMBER = re.compile(r"(?<![\w.])(?P<dollar>\$\s?)?(?P<whole>\d[\d,]*)(?P<fraction>\.\d+)?(?![\w]|\.\d)")


def written_digits(whole: str, fraction: str, *, dollar: bool) -> int:
    """Significant digits of a number as written: leading zeros never count; trailing zeros of
    the fraction do (``0.0190000`` says 6 digits); of a whole-dollar amount they do not."""
    digits = (whole.replace(",", "").rstrip(",") + fraction.lstrip(".")).lstrip("0")
    if not fraction and dollar:
        digits = digits.rstrip("0")
    return len(digits)


def money_values(text: str) -> list[tuple[str, int]]:
    """Every money value of ``text`` (a dollar amount, or any number with a decimal point) and its digits."""
    found = []
    for m in NUMBER.finditer(text):
        dollar, whole, fraction = bool(m.group("dollar")), m.group("whole").rstrip(","), m.group("fraction") or ""
        if dollar or fraction:
            found.append((m.group(0), written_digits(whole, fraction, dollar=dollar)))
    return found


def test_the_rule_finds_raw_amounts_and_passes_formatted_ones():
    assert money_values("spent 0.019392000000000000000000 today") == [("0.019392000000000000000000", 23)]
    assert money_values("$1,234.57 and $0.000021 and $12,345,679") == [
        ("$1,234.57", 6),
        ("$0.000021", 2),
        ("$12,345,679", 8),
    ]
    assert money_values("$123,456,790") == [("$123,456,790", 8)]
    assert money_values("12.5% of 1,234 ms, 3 calls, version 1.2.3, 2026-12-01, id 3fa85f64-5717") == [("12.5", 3)]


class PageText(HTMLParser):
    """What a person reads on a page: text outside scripts, styles and stored prompt/answer text, and the
    values of form fields."""

    SKIPPED = {"script", "style"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping: list[str] = []  # tags opened inside a skipped element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if self._skipping:
            if tag not in ("input", "br", "img", "meta", "link", "hr"):
                self._skipping.append(tag)
            return
        if tag in self.SKIPPED or "llm-text" in (values.get("class") or "").split():
            self._skipping.append(tag)
            return
        if tag == "input" and values.get("type") not in ("hidden", "checkbox", "radio", "submit"):
            self.parts.append(values.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def page_text(html: str) -> str:
    parser = PageText()
    parser.feed(html)
    return "\n".join(parser.parts)


def assert_page_money(url: str, html: str) -> int:
    """Every money value of the page within MAX_DIGITS; returns how many there were."""
    values = money_values(page_text(html))
    long = [text for text, digits in values if digits > MAX_DIGITS]
    assert not long, f"{url} shows money with more than {MAX_DIGITS} significant digits: {long[:10]}"
    return len(values)


# -- the data: the demo's traffic, and the endings it does not make -------------------------------


def extra_calls(user_id: int | None) -> list[CallRecord]:
    """A refusal, a failure, an unpriced call, an estimated one, and calls whose provider reported
    a cost different from ours (long exact decimals, as real costs have)."""
    now = datetime.combine(rollup_today(), time(12), UTC)
    base = {
        "endpoint": "chat",
        "provider": "openrouter",
        "requested_model": "openai/gpt-4o-mini",
        "model": "openai/gpt-4o-mini",
        "user_id": user_id,
        "feature": "support.reply",
        "created_at": now,
        "latency_ms": 812.3456789,
        "time_to_first_token_ms": 123.456789123,
    }
    usage = Usage(prompt_tokens=1234, completion_tokens=321, cached_tokens=100, total_tokens=1555)
    return [
        CallRecord(**base, status=REFUSED, cost=Decimal(0), error_type="BudgetExceeded", error_message="over budget"),
        CallRecord(**base, status=ERROR, error_type="RateLimitError", error_message="slow down"),
        CallRecord(**base, status=SUCCESS, usage=usage, cost=None),  # unpriced
        CallRecord(
            **base, status=SUCCESS, usage=usage, cost=Decimal("0.000382912345678901234567"), usage_estimated=True
        ),
        CallRecord(
            **base,
            status=SUCCESS,
            usage=usage,
            cost=Decimal("0.019392000000000000000000"),
            provider_cost=Decimal("0.0194"),
        ),
        CallRecord(
            **base,
            status=SUCCESS,
            usage=usage,
            cost=Decimal("0.000123456789012345678901"),
            provider_cost=Decimal("0.000123456789"),
        ),
        CallRecord(
            **base,
            status=SUCCESS,
            usage=Usage(),
            cost=Decimal(0),
            saved_cost=Decimal("0.001234567890123456789"),
            cached=True,
        ),
    ]


@pytest.fixture
def demo_site(db, admin_client, admin_user):
    call_command("llm_demo", "--calls", "120", "--days", "5", "--seed", "2", "--no-documents", stdout=StringIO())
    records = extra_calls(admin_user.pk)
    write_records(records, store_text=True)
    # A budget with spend in its period (counted from the rollups when saved) and an odd limit.
    budget = Budget.objects.create(name="company", soft_limit=Decimal("0.019392"), hard_limit=Decimal("250"))
    BudgetSpend.objects.update_or_create(
        budget=budget,
        period_start=budget.period_start(timezone.localdate()),
        defaults={"reserved": Decimal("0.000123456789012345678901")},
    )
    BudgetSpend.objects.create(
        budget=budget,
        period_start=budget.period_start(timezone.localdate()) - timedelta(days=40),
        spent=Decimal("12.345678901234567890123456"),
    )
    return {"records": records, "budget": budget}


def llm_admins():
    return [
        (model, model_admin) for model, model_admin in admin.site._registry.items() if model._meta.app_label == "llm"
    ]


def test_every_llm_admin_page_shows_money_with_at_most_8_digits(demo_site, admin_client, admin_user):
    visited: dict[str, int] = {}

    def visit(url: str, params: dict | None = None) -> str:
        response = admin_client.get(url, params or {})
        assert response.status_code == 200, (url, params, response.status_code)
        html = response.content.decode()
        visited[f"{url}?{params}" if params else url] = assert_page_money(url, html)
        return html

    # Every changelist of the app, and one detail page per model that has rows.
    assert {m._meta.model_name for m, _ in llm_admins()} >= {
        "llmrequest",
        "llmusagedaily",
        "budget",
        "modelprice",
        "pricingsyncrun",
    }
    listing = RequestFactory().get("/")
    listing.user = admin_user
    for model, model_admin in llm_admins():
        info = (model._meta.app_label, model._meta.model_name)
        visit(reverse("admin:{}_{}_changelist".format(*info)))
        # An object the admin lists (the trace admin lists root traces, not their spans).
        obj = model_admin.get_queryset(listing).order_by("pk").first()
        if obj is not None:
            visit(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))

    # The request log: every kind of call's detail page, and the filters the dashboard links to.
    for record in demo_site["records"]:
        visit(reverse("admin:llm_llmrequest_change", args=[record.id]))
    for row in LLMRequest.objects.filter(provider="simulator").order_by("-cost")[:3]:
        visit(reverse("admin:llm_llmrequest_change", args=[row.pk]))
    visit(LOG, {"status__exact": "refused"})
    visit(LOG, {"drift": "1", "created_at_from": str(rollup_today()), "created_at_to": str(rollup_today())})

    # The budget: its list, its form with spend per period, and the add form.
    budget = demo_site["budget"]
    html = visit(reverse("admin:llm_budget_change", args=[budget.pk]))
    assert 'value="0.019392"' in html and 'value="250"' in html  # the limits as typed, not 24 decimals
    assert "$12.35" in html  # last period's spend in the inline
    visit(reverse("admin:llm_budget_add"))
    visit(reverse("admin:llm_budget_changelist"))

    # The dashboard, unfiltered and narrowed, and each of its CSV exports.
    html = visit(DASHBOARD)
    assert 'id="llm-accuracy"' in html
    visit(DASHBOARD, {"period": "7", "model": "openai/gpt-4o-mini"})
    visit(DASHBOARD, {"period": "today", "provider": "openrouter"})
    for section in EXPORTS:
        assert_csv_money(section, admin_client.get(DASHBOARD, {"period": "7", "export": section}))

    # Money was there to be checked on the pages that show it.
    assert visited[DASHBOARD] > 20
    assert visited[reverse("admin:llm_llmrequest_changelist")] > 50


#: CSV columns of quotients (no exact decimal): rounded to MAX_DIGITS significant digits.
DERIVED_COLUMNS = {"avg_cost_usd", "share", "drift_share"}


def assert_csv_money(section: str, response) -> None:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv"), section
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    for row in rows:
        for column, cell in row.items():
            if not cell or not ("usd" in column or column in DERIVED_COLUMNS):
                continue
            value = Decimal(cell)
            # Exact text: no exponent, no trailing zeros, no padding.
            assert plain_decimal(value) == cell, (section, column, cell)
            if column in DERIVED_COLUMNS:
                assert significant_digits(value) <= MAX_DIGITS, (section, column, cell)
    if section == "headline":
        # Amounts are exact: the period's spend is the raw log's sum to the last digit.
        today = rollup_today()
        since = datetime.combine(today - timedelta(days=6), time.min, UTC)
        spent = LLMRequest.objects.filter(created_at__gte=since).aggregate(s=Sum("cost"))["s"]
        assert Decimal(next(r for r in rows if r["metric"] == "spend")["value"]) == spent
