"""Find the JSON object or array in a model's reply, repairing what models typically get wrong.

    from apps.llm.extractor import JSONExtractor
    extract = JSONExtractor().extract_json_from_response
    extract("Here's the data: {'name': 'John', 'age': 30}")   # {"name": "John", "age": 30}
    extract("no JSON here")                                     # None
    extract("no JSON here", strict=True)                        # raises JSONExtractionError
    extract(reply, schema=Person)                               # Person(...) or None

Where JSON is looked for, in order (the first value that parses wins):

1. the body of each fenced block labelled json/json5/jsonc or unlabelled (```json ... ```),
   including an unterminated fence at the end of a truncated reply;
2. each bracketed span ``{...}`` / ``[...]`` in the text, in document order, found by matching
   brackets outside quoted strings; a span still open at the end of the text (truncated output)
   runs to the end.

Each candidate is tried with ``json.loads``, then repaired with ``json_repair`` (single quotes,
True/False/None, trailing commas, comments, unquoted keys, missing closing brackets) before the
next candidate is looked at, so a broken object early in the reply beats a stray "[1]" later.
A repair is accepted only when it plausibly is what the text meant, because ``json_repair``
turns any text into *something*: the result must be the same kind as the candidate's opening
bracket, non-empty unless the brackets are, an object needs a ``key: value`` separator, and an
array may not contain bare words (so "[see above]" and "{placeholder}" in prose are not JSON).

Only objects and arrays are extracted: a bare number, string or ``true`` in a reply is prose.
When a reply has several JSON values, the first one is returned; with ``schema=``, the first one
that validates.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any, TypeVar, overload

import json_repair
from pydantic import BaseModel, ValidationError

JSONValue = dict[str, Any] | list[Any]
ModelT = TypeVar("ModelT", bound=BaseModel)

# Opening fence, optional language tag, body up to a closing fence or the end of the text.
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n`]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_JSON_FENCE_LANGUAGES = frozenset({"", "json", "json5", "jsonc"})
_CLOSER = {"{": "}", "[": "]"}
# Quoted strings (either quote, backslash escapes) and comments, removed before looking for
# bare words; an unquoted object key ("{a: 1}") is not a bare word.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', re.DOTALL)
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/|#[^\n]*", re.DOTALL)
_BARE_WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b(?!\s*:)")
# Characters that matter when matching brackets: everything else is skipped in one regex step.
_BRACKET_SYNTAX = re.compile(r"[\"'\\{}\[\]]")
_LITERALS = frozenset({"true", "false", "null", "True", "False", "None"})
# Bounds on the work for pathological input ("{{{{...", thousands of "[1]" citations); real
# replies are far below all three. Unclosed brackets make each span run to the end of the text,
# so the characters scanned in total are capped, which also caps what the parsers are handed.
_MAX_CANDIDATES = 2_000
_MIN_SCAN_BUDGET = 200_000
# Deeper nesting is not model output, and json_repair slows to seconds on it.
_MAX_DEPTH = 100
_EXCERPT_CHARS = 80


class JSONExtractionError(ValueError):
    """No usable JSON in the text (raised in strict mode); names the problem, quotes the text."""

    def __init__(self, problem: str, text: str) -> None:
        self.problem = problem
        self.excerpt = _excerpt(text)
        super().__init__(f"{problem}: {self.excerpt!r}")


class JSONValidationError(JSONExtractionError):
    """JSON was found but none of it validates against the schema (raised in strict mode)."""

    def __init__(self, problem: str, text: str, validation_error: ValidationError) -> None:
        self.validation_error = validation_error
        super().__init__(problem, text)


class JSONExtractor:
    """Extracts JSON from LLM output; stateless, safe to share across threads."""

    @overload
    def extract_json_from_response(self, text: str, *, strict: bool = ..., schema: None = ...) -> JSONValue | None: ...

    @overload
    def extract_json_from_response(self, text: str, *, strict: bool = ..., schema: type[ModelT]) -> ModelT | None: ...

    def extract_json_from_response(
        self, text: str, *, strict: bool = False, schema: type[BaseModel] | None = None
    ) -> JSONValue | BaseModel | None:
        """The first JSON object or array in ``text`` (as a ``schema`` instance when given).

        Not found, or (with ``schema``) nothing validates: ``None``, or with ``strict=True``
        ``JSONExtractionError`` / its subclass ``JSONValidationError``. ``text`` must be a str:
        ``None`` (a reply with no text, e.g. only tool calls) raises ``TypeError`` rather than
        passing for "no JSON", so callers handle that case on purpose.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        first_error: ValidationError | None = None
        for value in _parsed_candidates(text):
            if schema is None:
                return value
            try:
                return schema.model_validate(value)
            except ValidationError as exc:
                first_error = first_error or exc
        if not strict:
            return None
        if first_error is not None and schema is not None:
            detail = first_error.errors()[0]
            where = ".".join(str(part) for part in detail["loc"]) or "the value"
            raise JSONValidationError(
                f"JSON found but none validates as {schema.__name__} ({where}: {detail['msg']})", text, first_error
            )
        raise JSONExtractionError("no JSON object or array found", text)


def _parsed_candidates(text: str) -> Iterator[JSONValue]:
    """Every JSON value the text yields, in candidate order."""
    for candidate in _candidates(text):
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):
            value = _repair(candidate)
        if isinstance(value, (dict, list)):
            yield value


def _candidates(text: str) -> Iterator[str]:
    seen: set[str] = set()
    for candidate in itertools.chain(_fenced_bodies(text), _bracketed_spans(text)):
        if candidate not in seen:
            if len(seen) >= _MAX_CANDIDATES:
                return
            seen.add(candidate)
            yield candidate


def _fenced_bodies(text: str) -> Iterator[str]:
    for match in _FENCE.finditer(text):
        if match.group(1).lower() in _JSON_FENCE_LANGUAGES:
            body = match.group(2).strip()
            if body[:1] in _CLOSER:
                yield body


def _bracketed_spans(text: str) -> Iterator[str]:
    """``{...}`` and ``[...]`` spans in document order, inner ones after the span holding them."""
    budget = max(_MIN_SCAN_BUDGET, 4 * len(text))
    start = 0
    while budget > 0:
        positions = [p for p in (text.find("{", start), text.find("[", start)) if p >= 0]
        if not positions:
            return
        begin = min(positions)
        end, too_deep = _matching_end(text, begin)
        budget -= end - begin
        if too_deep:
            # Skip the deep region instead of rescanning it from each of its brackets.
            start = end
            continue
        yield text[begin:end]
        # Next scan starts inside this span: if it is not JSON, a span within it may be.
        start = begin + 1


def _matching_end(text: str, begin: int) -> tuple[int, bool]:
    """End (exclusive) of the bracketed span opened at ``begin``, the text's end if unclosed;
    and whether it nests deeper than ``_MAX_DEPTH`` (the end is then where that happened)."""
    stack: list[str] = []
    quote: str | None = None
    escaped_until = -1
    for match in _BRACKET_SYNTAX.finditer(text, begin):
        index = match.start()
        if index <= escaped_until:
            continue
        char = match.group()
        if quote is not None:
            if char == "\\":
                escaped_until = index + 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in _CLOSER:
            stack.append(_CLOSER[char])
            if len(stack) > _MAX_DEPTH:
                return index + 1, True
        elif char in "}]":
            if not stack or char != stack[-1]:
                return index + 1, False  # mismatched: let the parsers judge what we have
            stack.pop()
            if not stack:
                return index + 1, False
    return len(text), False


def _repair(candidate: str) -> JSONValue | None:
    try:
        value = json_repair.loads(candidate)
    except Exception:  # a repair library failing on odd input means "not JSON", whatever it raised
        return None
    opener = candidate[:1]
    if opener == "{":
        if not isinstance(value, dict):
            return None
        if not value:
            return value if _is_blank_inside(candidate) else None
        return value if ":" in candidate else None
    if opener == "[":
        if not isinstance(value, list):
            return None
        if not value:
            return value if _is_blank_inside(candidate) else None
        bare = set(_BARE_WORD.findall(_COMMENT.sub("", _QUOTED.sub('""', candidate)))) - _LITERALS
        return None if bare else value
    return None


def _is_blank_inside(candidate: str) -> bool:
    """``{}`` / ``[ ]``: really empty, not a lone opening bracket at the end of a reply."""
    stripped = candidate.strip()
    return len(stripped) >= 2 and stripped[-1] == _CLOSER[stripped[0]] and not stripped[1:-1].strip()


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT_CHARS else flat[: _EXCERPT_CHARS - 3] + "..."
