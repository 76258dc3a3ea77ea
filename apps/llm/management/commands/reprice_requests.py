"""``manage.py reprice_requests``: recompute the cost of past calls from the price history."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.llm.accounting.reprice import RepriceError, RepriceScope, reprice


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = (
        "Recompute the cost of past calls (answered, not from the cache) made from --since to --until "
        "(UTC days, inclusive; default: until now) from the token counts stored on each row and the "
        "prices in force when it was made (the ModelPrice history), or from one corrected price row "
        "(--price-id: every call of that row's model is priced with it). Rows whose cost, price or "
        "breakdown changes are updated, and the daily rollups adjusted by exactly the difference, in "
        "one transaction. Calls without a price in force at their time are left as they are. "
        "--dry-run reports what would change and writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, type=_day, metavar="YYYY-MM-DD", help="first day (UTC)")
        parser.add_argument("--until", type=_day, metavar="YYYY-MM-DD", help="last day (UTC, inclusive)")
        parser.add_argument("--model", metavar="MODEL", help="only calls that asked for or were answered by MODEL")
        parser.add_argument(
            "--price-id", type=int, metavar="N", help="price the calls of this ModelPrice row's model with it"
        )
        parser.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            scope = RepriceScope(
                since=options["since"], until=options["until"], model=options["model"], price_id=options["price_id"]
            )
            report = reprice(scope, dry_run=options["dry_run"])
        except (RepriceError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(report.format())
