"""Budget enforcement: reserve a call's estimated cost before sending it, settle it after.

Admission is one conditional ``UPDATE`` per budget (``spent + reserved + estimate <=
hard_limit``), so concurrent calls from any number of threads and processes can never
admit more than the limit between them. Budgets are read from the database at most every
few seconds; with none configured a call costs no query at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from apps.llm.errors import BudgetExceeded

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reservation:
    """Estimates held against budgets for one call; ``settle`` it exactly once."""

    estimate: Decimal
    holds: tuple[tuple[int, date], ...] = field(default_factory=tuple)


class BudgetGuard:
    def __init__(self, refresh_seconds: float = 5.0):
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._budgets: list = []
        self._loaded_at = float("-inf")

    def budgets(self) -> list:
        """The active budgets, re-read every ``refresh_seconds``."""
        from apps.llm.models import Budget

        with self._lock:
            if time.monotonic() - self._loaded_at >= self.refresh_seconds:
                self._budgets = list(Budget.objects.filter(is_active=True).order_by("pk"))
                self._loaded_at = time.monotonic()
            return self._budgets

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def reserve(
        self, *, user_id: int | None, feature: str, estimate: Callable[[], Decimal | None]
    ) -> Reservation | None:
        """Hold the call's estimated cost against every budget that applies, or raise ``BudgetExceeded``.

        ``estimate`` is only called when a budget applies (counting tokens is not free).
        """
        applicable = [b for b in self.budgets() if b.applies_to(user_id, feature)]
        if not applicable:
            return None
        amount = estimate() or Decimal(0)
        today = timezone.localdate()
        holds = []
        with transaction.atomic(), connection.cursor() as cursor:
            for budget in applicable:  # in primary-key order: no lock-order deadlocks
                start = budget.period_start(today)
                cursor.execute(
                    "INSERT INTO llm_budgetspend (budget_id, period_start, spent, reserved) VALUES (%s, %s, 0, 0) "
                    "ON CONFLICT (budget_id, period_start) DO NOTHING",
                    [budget.pk, start],
                )
                cursor.execute(
                    "UPDATE llm_budgetspend SET reserved = reserved + %s "
                    "WHERE budget_id = %s AND period_start = %s AND (%s::numeric IS NULL OR spent + reserved + %s <= %s) "
                    "RETURNING spent",
                    [amount, budget.pk, start, budget.hard_limit, amount, budget.hard_limit],
                )
                if cursor.fetchone() is None:
                    cursor.execute(
                        "SELECT spent + reserved FROM llm_budgetspend WHERE budget_id = %s AND period_start = %s",
                        [budget.pk, start],
                    )
                    (committed,) = cursor.fetchone()
                    raise BudgetExceeded(
                        f"Budget {budget.name!r} would be exceeded: {committed} of {budget.hard_limit} USD used "
                        f"this {budget.period}, this call is estimated at {amount} USD",
                        budget=budget.name,
                        limit=budget.hard_limit,
                        spent=committed,
                        estimate=amount,
                    )
                holds.append((budget.pk, start))
        return Reservation(estimate=amount, holds=tuple(holds))

    def settle(self, reservation: Reservation | None, cost: Decimal | None) -> None:
        """Replace the estimate by the real cost (0 for a failed call); warn past a soft limit."""
        if reservation is None:
            return
        by_id = {b.pk: b for b in self.budgets()}
        with transaction.atomic(), connection.cursor() as cursor:
            for budget_id, start in reservation.holds:
                cursor.execute(
                    "UPDATE llm_budgetspend SET reserved = GREATEST(reserved - %s, 0), spent = spent + %s "
                    "WHERE budget_id = %s AND period_start = %s RETURNING spent, soft_warned_at",
                    [reservation.estimate, cost or Decimal(0), budget_id, start],
                )
                row = cursor.fetchone()
                budget = by_id.get(budget_id)
                if row is None or budget is None or budget.soft_limit is None:
                    continue
                spent, warned_at = row
                if spent > budget.soft_limit and warned_at is None:
                    cursor.execute(
                        "UPDATE llm_budgetspend SET soft_warned_at = now() WHERE budget_id = %s AND period_start = %s",
                        [budget_id, start],
                    )
                    logger.warning(
                        "Budget %r passed its soft limit: %s of %s USD this %s",
                        budget.name,
                        spent,
                        budget.soft_limit,
                        budget.period,
                    )
