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
#: The days a filter may name. A period is stepped back by its length (the comparison period)
#: and forward by a day (its end as a half-open bound) from them: both stay valid dates.
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date.max - timedelta(days=MAX_DAYS + 1)
#: The largest id a filter may name (PostgreSQL's bigint).
MAX_ID = 2**63 - 1
#: Models drawn separately in the spend chart; the rest are summed into "Other".


#: Filter values that select calls *without* a user / feature ("" and absent mean "all").
NO_USER = "none"
NO_FEATURE = "-"
OTHER = "Other"


def rollup_today() -> date:
    """Today as the rollups count days (UTC), whatever time zone the request activated."""
    return datetime.now(UTC).date()


class QueryValueError(ValueError):
    """A querystring value no filter can use; the message says why, for the person who sent it."""


def check_query_value(value: str) -> str:
    """The check every filter's querystring value passes (the dashboard's, and every admin
    changelist's through ``apps.llm.admin.base.QuerystringGuard``): no NUL character.

    No name, id or search term contains one, and PostgreSQL cannot compare text with it (the
    query would fail with a DataError).
    """
    if "\x00" in value:
        raise QueryValueError("it contains a NUL character")
    return value


def shown_value(value: str, limit: int = 40) -> str:
    """A querystring value as a message quotes it: NULs visible, at most ``limit`` characters."""
    value = value.replace("\x00", "\\x00")
    return value if len(value) <= limit else f"{value[:limit]}…"


def parse_id(value: str) -> int | None:
    """A row id as written in a querystring: ASCII digits within bigint, else None.

    ``str.isdigit`` also accepts "²" or "٣", which ``int`` then refuses or reads as 3.
    """
    if not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= MAX_ID else None


def parse_day(value: str | None) -> date | None:
    """An ISO day (``2025-03-01``) of a filter; None when absent.

    Raises ``QueryValueError`` for anything else. The day may lie outside ``MIN_DATE..MAX_DATE``:
    ``clamp_day`` moves it inside before any arithmetic.
    """
    value = check_query_value((value or "").strip())
    if not value:
        return None
    try:
        # ASCII only: "٢٠٢٥-٠٣-٠١" is no date a filter writes.
        if value.isascii():
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise QueryValueError(f"“{shown_value(value)}” is not a date (YYYY-MM-DD)")


def clamp_day(day: date) -> date:
    """``day`` moved into ``MIN_DATE..MAX_DATE``."""
    return min(max(day, MIN_DATE), MAX_DATE)


def parse_user(value: str | None) -> tuple[int | None, bool] | None:
    """A user filter value: ``(user_id, False)``, ``(None, True)`` for "no user", None for "all"
    (or for a value that is not a user id: the request log then looks it up as an e-mail address)."""
    value = (value or "").strip()
    if not value:
        return None
    if value == NO_USER:
        return None, True
    user_id = parse_id(value)
    return None if user_id is None else (user_id, False)


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
    #: Only calls carrying this tag ("": all). The tag rollup has days and tags only, so a tag is
    #: not combined with the dimensions above (``QueryReading`` drops them) and the figures per
    #: model, user or feature are not available under it (``Dashboard.not_narrowed``).
    tag: str = ""

    @classmethod
    def for_period(cls, period: str = DEFAULT_PERIOD, *, today: date | None = None, **dims: Any) -> DashboardFilters:
        today = today or rollup_today()
        period = _period_name(period)
        return cls(start=today - timedelta(days=PERIODS[period] - 1), end=today, period=period, **dims)

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, today: date | None = None) -> DashboardFilters:
        """Read the dashboard's querystring; values that do not parse fall back to the defaults."""
        return QueryReading.of(query, today=today).filters

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

    @property
    def has_dimensions(self) -> bool:
        """Narrowed by provider, model, user or feature (not counting the tag)."""
        return bool(self.dimension_names())

    def dimension_names(self) -> set[str]:
        """The rollup columns the filters narrow (``apps.llm.accounting.rollups.DIMENSIONS``; not the tag)."""
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
            "tag": self.tag,
        }
        return {k: v for k, v in params.items() if v}

    def query_params(self) -> dict[str, str]:
        """This dashboard's own querystring."""
        params = {"period": self.period}
        if self.period == "custom":
            params |= {"start": self.start.isoformat(), "end": self.end.isoformat()}
        return params | self.dimension_params()

    def dimensions_q(self) -> Q:
        """The dimensions, for either table (both name them alike); not the tag (``request_log_q`` has it)."""
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
        q = Q(created_at__gte=since, created_at__lt=until) & self.dimensions_q()
        return q & Q(tags__contains=[self.tag]) if self.tag else q


def _preset(value: str) -> str | None:
    """A preset period's key ("7d" is read as "7"), None for anything else."""
    value = value.strip().lower()
    value = value.removesuffix("d") if value[:-1].isdigit() else value
    return value if value in PERIODS else None


def _period_name(value: str) -> str:
    """A preset period's key; anything unknown is read as the default."""
    return _preset(value) or DEFAULT_PERIOD


@dataclass(frozen=True)
class QueryReading:
    """A dashboard querystring read: its filters, and what of it was not used as sent (as messages).

    ``ignored``: values no filter can use (a NUL character, a user that is no id, a day that is
    no date, an unknown period), left out. ``adjusted``: days outside ``MIN_DATE..MAX_DATE``,
    moved to that bound (no call is that old or that far ahead: the figures are the same).
    """

    filters: DashboardFilters
    ignored: tuple[str, ...] = ()
    adjusted: tuple[str, ...] = ()

    @property
    def messages(self) -> list[str]:
        return [*self.ignored, *self.adjusted]

    @classmethod
    def of(cls, query: Mapping[str, str], *, today: date | None = None) -> QueryReading:
        today = today or rollup_today()
        ignored: list[str] = []
        adjusted: list[str] = []

        def text(name: str, *, strip: bool = True) -> str:
            value = query.get(name) or ""
            try:
                return check_query_value(value.strip() if strip else value)
            except QueryValueError as error:
                ignored.append(f"The {name} filter was ignored: {error}.")
                return ""

        def day(name: str) -> date | None:
            try:
                parsed = parse_day(query.get(name))
            except QueryValueError as error:
                ignored.append(f"The {name} date was ignored: {error}.")
                return None
            if parsed is not None and parsed != clamp_day(parsed):
                adjusted.append(f"The {name} date {parsed} is out of range: {clamp_day(parsed)} is used instead.")
                return clamp_day(parsed)
            return parsed

        dims: dict[str, Any] = {
            "provider": text("provider"),
            "model": text("model"),
            "feature": parse_feature(text("feature", strip=False)),
            "tag": text("tag"),
        }
        user = text("user")
        parsed_user = parse_user(user)
        if parsed_user is not None:
            dims["user_id"], dims["without_user"] = parsed_user
        elif user:
            ignored.append(f"The user filter was ignored: “{shown_value(user)}” is not a user id.")
        if dims["tag"]:
            crossed = [name for name in ("provider", "model", "feature") if dims[name] not in ("", None)]
            crossed += ["user"] if "user_id" in dims else []
            if crossed:
                # The tag rollup has days and tags only: the tag wins (it was the last thing picked).
                ignored.append(
                    f"The {', '.join(crossed)} filter{'s were' if len(crossed) > 1 else ' was'} ignored: "
                    "figures by tag cannot be narrowed further (the tag rollup has days and tags only)."
                )
                dims |= {"provider": "", "model": "", "feature": None, "user_id": None, "without_user": False}
        period = text("period") or DEFAULT_PERIOD
        filters = None
        if period == "custom":
            bounds = [d for d in (day("start"), day("end")) if d is not None]
            if bounds:
                start, end = min(bounds), max(bounds)
                # Clamped so that a typo ("0202-01-01") cannot ask for centuries of days.
                start = max(start, end - timedelta(days=MAX_DAYS - 1))
                filters = DashboardFilters(start=start, end=end, period="custom", **dims)
        elif _preset(period) is None:
            ignored.append(f"Unknown period “{shown_value(period)}”: {PERIOD_LABELS[DEFAULT_PERIOD].lower()} shown.")
        if filters is None:
            filters = DashboardFilters.for_period(period, today=today, **dims)
        return cls(filters, tuple(ignored), tuple(adjusted))
