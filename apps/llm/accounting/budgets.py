"""Budget enforcement: reserve a call's estimated cost before sending it, settle it after.

Admission is one conditional ``UPDATE`` per budget (``spent + reserved + estimate <=
hard_limit``), so concurrent calls from any number of threads and processes can never
admit more than the limit between them. Budgets are read from the database at most every
few seconds; with none configured a call costs no query at all.

When the database cannot be reached, ``LLM_BUDGETS_WHEN_DB_DOWN`` decides: ``allow`` (the
default) admits calls against the last budgets read, and the spend of calls admitted or
settled meanwhile is applied when the database answers again; ``deny`` refuses them with
``AccountingUnavailable``. The client never sees a raw database error from here.

A model without a price under a hard limit follows ``LLM_UNPRICED``: ``estimate`` (the
default) holds and charges a conservative price, ``refuse`` refuses the call
(``UnpricedModel``), ``allow`` admits it at no cost (the limit then does not hold for it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.llm.conf import llm_settings
from apps.llm.errors import AccountingUnavailable, BudgetExceeded, UnpricedModel

logger = logging.getLogger(__name__)

#: (budget id, period start)
Hold = tuple[int, date]
#: (hold, amount reserved there, cost); reserved None: admitted while the database was away, so
#: its spend row may not exist yet.
Settlement = tuple[Hold, Decimal | None, Decimal]


@dataclass(frozen=True)
class Reservation:
    """Estimates held against budgets for one call; ``settle`` it exactly once.

    ``unrecorded`` are budgets the call was admitted against while the database was away:
    nothing is reserved there, the cost is added when it settles.
    """

    estimate: Decimal
    holds: tuple[Hold, ...] = field(default_factory=tuple)
    unrecorded: tuple[Hold, ...] = field(default_factory=tuple)
    #: The estimate is a conservative price for a model without one.
    price_estimated: bool = False


class BudgetGuard:
    """Reserves and settles calls against the active budgets.

    The budgets are read once, then re-read every ``refresh_seconds`` by a background thread
    while calls go on with the ones read last: no call waits for that query or for a lock.
    ``refresh_seconds=0`` reads them on every call, in the caller's thread (tests, scripts).
    """

    def __init__(self, refresh_seconds: float = 5.0):
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._budgets: list = []
        self._loaded_at = float("-inf")
        self._loaded_once = False
        self._refreshing = threading.Lock()  # held by the one refresh under way
        # Settlements the database could not take, applied when it answers again.
        self._pending: list[Settlement] = []

    def budgets(self) -> list:
        """The active budgets, at most ``refresh_seconds`` old (the last ones read while the database is away)."""
        if time.monotonic() - self._loaded_at < self.refresh_seconds:
            return self._budgets
        if not self._loaded_once or self.refresh_seconds <= 0:
            with self._refreshing:
                if not self._loaded_once or self.refresh_seconds <= 0:
                    self._load()
        elif self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh_in_background, name="llm-budgets", daemon=True).start()
        return self._budgets

    def invalidate(self) -> None:
        """Read the budgets again on the next call, in the caller's thread."""
        self._loaded_once = False
        self._loaded_at = float("-inf")

    def _refresh_in_background(self) -> None:
        try:
            self._load()
        except AccountingUnavailable:
            pass  # LLM_BUDGETS_WHEN_DB_DOWN=deny: the calls' own reservations meet the outage
        finally:
            self._refreshing.release()
            connections.close_all()  # this thread's own connection

    def _load(self) -> None:
        from apps.llm.models import Budget

        # Whatever happens, not again before refresh_seconds: an outage costs one attempt per period.
        self._loaded_at = time.monotonic()
        try:
            self._budgets = list(Budget.objects.filter(is_active=True).order_by("pk"))
            self._loaded_once = True
        except DatabaseError as exc:
            self._database_down(exc, "reading the budgets")
            if not self._loaded_once:
                logger.warning("No budgets were ever read: calls are admitted without budgets")

    def reserve(
        self,
        *,
        user_id: int | None,
        feature: str,
        estimate: Callable[[], Decimal | None],
        conservative_estimate: Callable[[], Decimal] | None = None,
    ) -> Reservation | None:
        """Hold the call's estimated cost against every budget that applies, or raise a ``Refused`` error.

        ``estimate`` is only called when a budget applies (counting tokens is not free); it
        returns None for a model without a price, and then ``LLM_UNPRICED`` decides, using
        ``conservative_estimate`` for ``estimate``.
        """
        applicable = [b for b in self.budgets() if b.applies_to(user_id, feature)]
        if not applicable:
            return None
        amount, price_estimated = estimate(), False
        if amount is None:
            amount, price_estimated = self._unpriced(applicable, conservative_estimate)
        today = timezone.localdate()
        wanted = [(budget, budget.period_start(today)) for budget in applicable]
        try:
            self._apply_pending()
            holds = self._hold(wanted, amount)
        except DatabaseError as exc:
            self._database_down(exc, "reserving against the budgets")
            return Reservation(
                amount, unrecorded=tuple((b.pk, start) for b, start in wanted), price_estimated=price_estimated
            )
        return Reservation(amount, holds=holds, price_estimated=price_estimated)

    def settle(self, reservation: Reservation | None, cost: Decimal | None) -> None:
        """Replace the estimate by the real cost (0 for a failed call); warn past a soft limit."""
        if reservation is None:
            return
        cost = cost or Decimal(0)
        settlements: list[Settlement] = [(hold, reservation.estimate, cost) for hold in reservation.holds]
        settlements += [(hold, None, cost) for hold in reservation.unrecorded]
        try:
            self._apply_pending()
            self._settle(settlements)
        except DatabaseError as exc:
            self._database_down(exc, "settling a call's cost")
            with self._lock:
                self._pending.extend(settlements)

    # -- the database side ------------------------------------------------------------------------

    def _hold(self, wanted: list[tuple[Any, date]], amount: Decimal) -> tuple[Hold, ...]:
        holds = []
        with transaction.atomic(), connection.cursor() as cursor:
            for budget, start in wanted:  # in primary-key order: no lock-order deadlocks
                cursor.execute(
                    "INSERT INTO llm_budgetspend (budget_id, period_start, spent, reserved) VALUES (%s, %s, 0, 0) "
                    "ON CONFLICT (budget_id, period_start) DO NOTHING",
                    [budget.pk, start],
                )
                cursor.execute(
                    "UPDATE llm_budgetspend SET reserved = reserved + %s "
                    "WHERE budget_id = %s AND period_start = %s "
                    "AND (%s::numeric IS NULL OR spent + reserved + %s <= %s) RETURNING spent",
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
        return tuple(holds)

    def _settle(self, settlements: Iterable[Settlement]) -> None:
        by_id = {b.pk: b for b in self.budgets()}
        with transaction.atomic(), connection.cursor() as cursor:
            for (budget_id, start), held, cost in settlements:
                if held is None:  # a reservation made the row; one admitted during an outage did not
                    cursor.execute(
                        "INSERT INTO llm_budgetspend (budget_id, period_start, spent, reserved) "
                        "VALUES (%s, %s, 0, 0) ON CONFLICT (budget_id, period_start) DO NOTHING",
                        [budget_id, start],
                    )
                cursor.execute(
                    "UPDATE llm_budgetspend SET reserved = GREATEST(reserved - %s, 0), spent = spent + %s "
                    "WHERE budget_id = %s AND period_start = %s RETURNING spent, soft_warned_at",
                    [held or Decimal(0), cost, budget_id, start],
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

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            self._settle(pending)
        except DatabaseError:
            with self._lock:
                self._pending[:0] = pending
            raise
        logger.info("The database is back: applied %d budget settlements made during the outage", len(pending))

    def _database_down(self, exc: DatabaseError, doing: str) -> None:
        # A broken connection stays broken: drop it so that the next attempt reconnects.
        connection.close_if_unusable_or_obsolete()
        if llm_settings().budgets_when_db_down == "deny":
            raise AccountingUnavailable(
                f"The budgets cannot be checked: the database is unreachable while {doing} "
                f"(LLM_BUDGETS_WHEN_DB_DOWN=deny)"
            ) from None
        logger.warning(
            "Database unreachable while %s (%s): the call is admitted, its spend applied later",
            doing,
            type(exc).__name__,
        )

    def _unpriced(self, applicable: list, conservative_estimate: Callable[[], Decimal] | None) -> tuple[Decimal, bool]:
        if all(b.hard_limit is None for b in applicable):
            return Decimal(0), False
        policy = llm_settings().unpriced
        if policy == "refuse":
            names = ", ".join(repr(b.name) for b in applicable if b.hard_limit is not None)
            raise UnpricedModel(
                f"The model has no price and the hard limit of budget {names} applies (LLM_UNPRICED=refuse)"
            )
        if policy == "estimate" and conservative_estimate is not None:
            return conservative_estimate(), True
        return Decimal(0), False


def period_spend(budget: Any, today: date | None = None) -> Decimal:
    """What the calls the budget covers cost so far in its current period, from the rollups."""
    from apps.llm.accounting.rollups import rollup_for

    start = budget.period_start(today or timezone.localdate())
    narrowed: dict[str, Any] = {}
    if budget.scope == budget.Scope.USER:
        narrowed["user_id"] = budget.user_id
    elif budget.scope == budget.Scope.FEATURE:
        narrowed["feature"] = budget.feature
    rows = rollup_for(narrowed).model._default_manager.filter(date__gte=start, **narrowed)
    return rows.aggregate(spent=Sum("cost"))["spent"] or Decimal(0)


def recount_period_spend(budget: Any, today: date | None = None) -> Decimal:
    """Set the budget's spend in its current period to what the rollups say was spent.

    A budget created (or re-scoped) mid-period starts from the spend already made, not from
    $0; calls in flight keep their reservations.
    """
    from apps.llm.models import BudgetSpend

    today = today or timezone.localdate()
    spent = period_spend(budget, today)
    BudgetSpend.objects.update_or_create(
        budget=budget, period_start=budget.period_start(today), defaults={"spent": spent}
    )
    return spent
