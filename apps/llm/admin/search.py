"""The request log's search box: ``key:value`` terms, each routed to an indexed lookup.

Django's default search (``icontains`` over every search field, OR-ed) reads every row of a
log of tens of millions. Here a term says which column it means (``request:chatcmpl-9x``,
``user:alice``, ``feature:support``, ``model:claude``, ``error:timeout``) and becomes an
equality on that column's index. Where a person types part of a name (a feature, a model),
the part is matched against the column's distinct values (an index skip scan, as the dropdown
filters read them) and the log is filtered by equality on the names that match.

Terms are separated by spaces and all apply (``user:alice error:"rate limit"``); a term
without a known key is an exact id, model or feature. A new searchable column is one
``SearchKey`` in ``SEARCH_KEYS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from django.db.models import Q
from django.utils.text import smart_split

from apps.llm.admin.filters import distinct_indexed_values, user_condition
from apps.llm.models import LLMRequest

#: Matches no row; Django answers it without a query.
NOTHING = Q(pk__in=[])


@dataclass(frozen=True)
class SearchKey:
    """``name:value`` in the search box: ``condition(value)`` selects the calls it means."""

    name: str
    condition: Callable[[str], Q]
    #: What the value is, for the search box's help text.
    value_help: str


def uuid_equals(column: str) -> Callable[[str], Q]:
    """Equality on a UUID column (its index); a value that is no UUID matches nothing."""

    def condition(value: str) -> Q:
        try:
            return Q(**{column: UUID(value)})
        except ValueError:
            return NOTHING

    return condition


def name_contains(column: str) -> Callable[[str], Q]:
    """The calls whose ``column`` contains ``value`` (any case): the matching names are found among
    the column's distinct values, read by a skip scan of its index, then selected by equality."""

    def condition(value: str) -> Q:
        table = LLMRequest._meta.db_table
        names = [name for name in distinct_indexed_values(table, column) if value.casefold() in name.casefold()]
        return Q(**{f"{column}__in": names}) if names else NOTHING

    return condition


def request_condition(value: str) -> Q:
    """Our id (the primary key) or the provider's request id (a partial index): exact."""
    return uuid_equals("pk")(value) | Q(request_id=value)


def error_condition(value: str) -> Q:
    """Failed and refused calls whose error type or message contains ``value`` (any case).

    No index serves a substring; the status index narrows the read to failures (few, next to
    the successes), then the text is compared on those rows.
    """
    failed = Q(status__in=[LLMRequest.Status.ERROR, LLMRequest.Status.REFUSED])
    return failed & (Q(error_type__icontains=value) | Q(error_message__icontains=value))


SEARCH_KEYS: dict[str, SearchKey] = {
    key.name: key
    for key in (
        SearchKey("request", request_condition, "our id or the provider's"),
        SearchKey("user", user_condition, "username, e-mail, id or none"),
        SearchKey("feature", name_contains("feature"), "part of its name"),
        SearchKey("model", name_contains("model"), "part of its name"),
        SearchKey("error", error_condition, "part of the type or message"),
        SearchKey("tag", lambda value: Q(tags__contains=[value]), "a tag"),
        SearchKey("trace", uuid_equals("trace_id"), "a trace id"),
    )
}

SEARCH_HELP_TEXT = "  ".join(f"{key.name}:…" for key in SEARCH_KEYS.values()) + "  or an exact id, model or feature"


def bare_condition(term: str) -> Q:
    """A term without a key: an exact id (ours or the provider's), model or feature, each indexed."""
    return request_condition(term) | Q(model=term) | Q(feature=term)


def term_condition(term: str) -> Q:
    """One term of the search box: ``key:value`` for a key of ``SEARCH_KEYS``, else a bare term.

    An unknown key is part of the term (a provider's request id may hold a colon); quotes around
    the value are dropped (``error:"rate limit"``).
    """
    name, colon, value = term.partition(":")
    key = SEARCH_KEYS.get(name.strip().lower()) if colon else None
    value = _unquoted(value.strip())
    if key is None or not value:
        return bare_condition(_unquoted(term))
    return key.condition(value)


def search_condition(search_term: str) -> Q | None:
    """Every term of the search box, all required; None for an empty box."""
    terms = [term for term in smart_split(search_term.strip()) if term]
    if not terms:
        return None
    condition = Q()
    for term in terms:
        condition &= term_condition(term)
    return condition


def _unquoted(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text
