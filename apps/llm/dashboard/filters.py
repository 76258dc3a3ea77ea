"""What the dashboard is narrowed to: the period (UTC days) and the dimensions, read from a querystring."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import (
    Q,
)

#: Period choices: name -> number of days ending today (inclusive).
PERIODS: dict[str, int] = {"today": 1, "7": 7, "30": 30, "90": 90}
PERIOD_LABELS: dict[str, str] = {
    "today": "Today",
    "7": "Last 7 days",
    "30": "Last 30 days",
    "90": "Last 90 days",
    "custom": "Custom range",
}
DEFAULT_PERIOD = "30"
#: Longest custom range: the daily charts and the (day x model) query stay small.
MAX_DAYS = 366
#: Models drawn separately in the spend chart; the rest are summed into "Other".


#: Filter values that select calls *without* a user / feature ("" and absent mean "all").
NO_USER = "none"
NO_FEATURE = "-"
OTHER = "Other"


def rollup_today() -> date:
    """Today as the rollups count days (UTC), whatever time zone the request activated."""
    return datetime.now(UTC).date()


def parse_user(value: str | None) -> tuple[int | None, bool] | None:
    """A user filter value: ``(user_id, False)``, ``(None, True)`` for "no user", None for "all"."""
    value = (value or "").strip()
    if not value:
        return None
    if value == NO_USER:
        return None, True
    return (int(value), False) if value.isdigit() else None


def parse_feature(value: str | None) -> str | None:
    """A feature filter value: the feature, ``""`` for "no feature", None for "all"."""
    if value is None or value == "":
        return None
    return "" if value == NO_FEATURE else value


@dataclass(frozen=True)
class DashboardFilters:
    """The period (inclusive UTC days) and the dimensions the dashboard is narrowed to."""

    start: date
    end: date
    period: str = DEFAULT_PERIOD
    provider: str = ""
    model: str = ""
    user_id: int | None = None
    #: Only calls attributed to no user (``user_id`` is then None).
    without_user: bool = False
    #: None: every feature; "": calls without a feature.
    feature: str | None = None

    @classmethod
    def for_period(cls, period: str = DEFAULT_PERIOD, *, today: date | None = None, **dims: Any) -> DashboardFilters:
        today = today or rollup_today()
        period = _period_name(period)
        return cls(start=today - timedelta(days=PERIODS[period] - 1), end=today, period=period, **dims)

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, today: date | None = None) -> DashboardFilters:
        """Read the dashboard's querystring; values that do not parse fall back to the defaults."""
        today = today or rollup_today()
        dims: dict[str, Any] = {
            "provider": (query.get("provider") or "").strip(),
            "model": (query.get("model") or "").strip(),
            "feature": parse_feature(query.get("feature")),
        }
        user = parse_user(query.get("user"))
        if user is not None:
            dims["user_id"], dims["without_user"] = user
        period = query.get("period") or DEFAULT_PERIOD
        if period == "custom":
            bounds = [d for d in (_parse_date(query.get("start")), _parse_date(query.get("end"))) if d is not None]
            if bounds:
                start, end = min(bounds), max(bounds)
                # Clamped so that a typo ("0202-01-01") cannot ask for centuries of days.
                start = max(start, end - timedelta(days=MAX_DAYS - 1))
                return cls(start=start, end=end, period="custom", **dims)
            period = DEFAULT_PERIOD
        return cls.for_period(period, today=today, **dims)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def day_list(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def previous(self) -> DashboardFilters:
        """The period of the same length just before this one, same dimensions."""
        return dataclasses.replace(
            self, start=self.start - timedelta(days=self.days), end=self.start - timedelta(days=1), period="custom"
        )

    def narrowed(self, **dims: Any) -> DashboardFilters:
        return dataclasses.replace(self, **dims)

    def period_only(self) -> DashboardFilters:
        """The same period, every dimension cleared."""
        return DashboardFilters(start=self.start, end=self.end, period=self.period)

    def dimension_names(self) -> set[str]:
        """The rollup columns the filters narrow (``apps.llm.accounting.rollups.DIMENSIONS``)."""
        names = {
            "provider": bool(self.provider),
            "model": bool(self.model),
            "user_id": self.without_user or self.user_id is not None,
            "feature": self.feature is not None,
        }
        return {name for name, narrowed in names.items() if narrowed}

    @property
    def user_param(self) -> str:
        return NO_USER if self.without_user else ("" if self.user_id is None else str(self.user_id))

    @property
    def feature_param(self) -> str:
        return "" if self.feature is None else (self.feature or NO_FEATURE)

    def dimension_params(self) -> dict[str, str]:
        """The dimensions as querystring values; the request-log filters read the same names."""
        params = {
            "provider": self.provider,
            "model": self.model,
            "user": self.user_param,
            "feature": self.feature_param,
        }
        return {k: v for k, v in params.items() if v}

    def query_params(self) -> dict[str, str]:
        """This dashboard's own querystring."""
        params = {"period": self.period}
        if self.period == "custom":
            params |= {"start": self.start.isoformat(), "end": self.end.isoformat()}
        return params | self.dimension_params()

    def dimensions_q(self) -> Q:
        """The dimensions, for either table (both name them alike)."""
        q = Q()
        if self.provider:
            q &= Q(provider=self.provider)
        if self.model:
            q &= Q(model=self.model)
        if self.without_user:
            q &= Q(user__isnull=True)
        elif self.user_id is not None:
            q &= Q(user_id=self.user_id)
        if self.feature is not None:
            q &= Q(feature=self.feature)
        return q

    def dimensions_sql(self) -> tuple[str, list[Any]]:
        """``dimensions_q`` as a SQL condition, for the raw queries (same columns in both tables)."""
        parts: list[str] = []
        params: list[Any] = []
        for column, value in (("provider", self.provider), ("model", self.model)):
            if value:
                parts.append(f"{column} = %s")
                params.append(value)
        if self.without_user:
            parts.append("user_id IS NULL")
        elif self.user_id is not None:
            parts.append("user_id = %s")
            params.append(self.user_id)
        if self.feature is not None:
            parts.append("feature = %s")
            params.append(self.feature)
        return " AND ".join(parts) or "TRUE", params

    def rollup_q(self) -> Q:
        return Q(date__gte=self.start, date__lte=self.end) & self.dimensions_q()

    @property
    def window(self) -> tuple[datetime, datetime]:
        """The period as a half-open UTC interval: a plain range on the created_at indexes."""
        return (
            datetime.combine(self.start, time.min, tzinfo=UTC),
            datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC),
        )

    def request_log_q(self) -> Q:
        since, until = self.window
        return Q(created_at__gte=since, created_at__lt=until) & self.dimensions_q()


def _period_name(value: str) -> str:
    """A preset period's key; "7d" is read as "7", anything unknown as the default."""
    value = value.strip().lower()
    value = value.removesuffix("d") if value[:-1].isdigit() else value
    return value if value in PERIODS else DEFAULT_PERIOD


def _parse_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        return None
