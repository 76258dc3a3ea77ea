"""JSONExtractor: JSON found in the shapes models really produce, and nothing found in prose."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from apps.llm.extractor import JSONExtractionError, JSONExtractor, JSONValidationError


@pytest.fixture(scope="module")
def extract():
    return JSONExtractor().extract_json_from_response


class Person(BaseModel):
    name: str
    age: int


@pytest.mark.parametrize(
    "text, expected",
    [
        # Plain JSON, with or without prose around it.
        ('{"name": "John", "age": 30}', {"name": "John", "age": 30}),
        ('Sure! Here it is: {"name": "John", "age": 30}. Anything else?', {"name": "John", "age": 30}),
        # Code fences, labelled or not.
        ('```json\n{"a": 1, "b": [1, 2, 3]}\n```', {"a": 1, "b": [1, 2, 3]}),
        ('Result:\n```\n{"a": 1}\n```\nDone.', {"a": 1}),
        ('```JSON\n  {"a": 1}  \n```', {"a": 1}),
        # Python-style output.
        ("Here's the data: {'name': 'John', 'age': 30}", {"name": "John", "age": 30}),
        ('{"ok": True, "missing": None, "failed": False}', {"ok": True, "missing": None, "failed": False}),
        ("{'quote': \"it's fine\"}", {"quote": "it's fine"}),
        # Trailing commas and comments.
        ('{"a": 1, "b": 2,}', {"a": 1, "b": 2}),
        ("[1, 2, 3,]", [1, 2, 3]),
        ('{\n  "a": 1, // the first\n  /* the second */ "b": 2\n}', {"a": 1, "b": 2}),
        # Unquoted keys (JavaScript object literal).
        ("{name: 'John', age: 30}", {"name": "John", "age": 30}),
        # Arrays, including at top level and of objects.
        ('[{"id": 1}, {"id": 2}]', [{"id": 1}, {"id": 2}]),
        ("The ids are [1, 2, 3].", [1, 2, 3]),
        ('```json\n["a", "b"]\n```', ["a", "b"]),
        # Truncated output: an unterminated object or fence at the end.
        ('Here you go: {"name": "John", "tags": ["a", "b"', {"name": "John", "tags": ["a", "b"]}),
        ('```json\n{"name": "John", "bio": "Born in', {"name": "John", "bio": "Born in"}),
        ('[{"id": 1}, {"id": 2}, {"id":', [{"id": 1}, {"id": 2}, {"id": ""}]),
        # Braces, brackets and quotes inside strings do not end the object.
        (
            '{"text": "a } and ] and { here", "n": {"deep": [1, {"x": "y"}]}}',
            {"text": "a } and ] and { here", "n": {"deep": [1, {"x": "y"}]}},
        ),
        ('{"q": "she said \\"hi\\" {twice}"}', {"q": 'she said "hi" {twice}'}),
        # Unicode and numbers.
        (
            '{"city": "Zürich", "greeting": "こんにちは", "emoji": "🌍"}',
            {"city": "Zürich", "greeting": "こんにちは", "emoji": "🌍"},
        ),
        ('{"\\u00e9": "\\u00e9t\\u00e9"}', {"é": "été"}),
        (
            '{"int": 42, "neg": -7, "float": 3.14, "exp": 1e5, "big": 12345678901234567890}',
            {"int": 42, "neg": -7, "float": 3.14, "exp": 100000.0, "big": 12345678901234567890},
        ),
        # An apostrophe in the prose before the JSON.
        ("I'm sure it's this: {\"ok\": true}", {"ok": True}),
        ('Here is the JSON:\n\n{\n  "name": "O\'Brien"\n}\n\nLet me know!', {"name": "O'Brien"}),
    ],
)
def test_extracts(extract, text, expected):
    assert extract(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n  ",
        "Hello world",
        "I could not find any data for that request.",
        "The answer is 42.",
        "true",
        "See the reference [citation needed] for more.",
        "Replace {placeholder} with your name.",
        "Use { to open a block",
        "Here is the JSON: {",
        "[TODO]",
        "```python\nprint('hello')\n```",
    ],
)
def test_prose_gives_none(extract, text):
    assert extract(text) is None
    with pytest.raises(JSONExtractionError):
        extract(text, strict=True)


def test_multiple_json_values_give_the_first(extract):
    assert extract('first {"a": 1} then {"b": 2}') == {"a": 1}
    assert extract('```json\n{"a": 1}\n```\n```json\n{"b": 2}\n```') == {"a": 1}
    # A fenced block wins over JSON outside fences.
    assert extract('Example: {"example": true}\n```json\n{"real": 1}\n```') == {"real": 1}


def test_broken_json_beats_later_stray_brackets(extract):
    # Prose brackets after a repairable object must not win just because they parse as-is.
    assert extract("{'a': 1} (see [1])") == {"a": 1}
    assert extract("```json\n{'a': 1}\n```\nSources: [1]") == {"a": 1}
    # ...and prose brackets before real JSON are skipped.
    assert extract('Fill in {name}, then: {"name": "x"}') == {"name": "x"}
    assert extract("See [the docs] and [1, 2]") == [1, 2]


def test_strict_error_names_the_problem_and_quotes_the_text(extract):
    with pytest.raises(JSONExtractionError) as info:
        extract("The model refused:    it said\nno.", strict=True)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.problem == "no JSON object or array found"
    assert error.excerpt == "The model refused: it said no."
    assert "no JSON object or array found" in str(error) and "The model refused" in str(error)

    with pytest.raises(JSONExtractionError) as info:
        extract("x" * 500, strict=True)
    assert len(info.value.excerpt) == 80 and info.value.excerpt.endswith("...")


def test_strict_still_returns_found_json(extract):
    assert extract("{'a': 1}", strict=True) == {"a": 1}


def test_non_str_input_is_a_type_error(extract):
    with pytest.raises(TypeError):
        extract(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        extract(b'{"a": 1}')  # type: ignore[arg-type]


# --- schema validation ----------------------------------------------------------------------------


def test_schema_returns_a_model_instance(extract):
    person = extract("Here's the data: {'name': 'John', 'age': 30}", schema=Person)
    assert person == Person(name="John", age=30)
    fenced = '```json\n{"name": "Ann", "age": "41"}\n```'
    assert extract(fenced, schema=Person, strict=True) == Person(name="Ann", age=41)


def test_schema_picks_the_first_value_that_validates(extract):
    text = 'Format: {"field": "value"}. Answer: {"name": "John", "age": 30}'
    assert extract(text) == {"field": "value"}
    assert extract(text, schema=Person) == Person(name="John", age=30)


def test_schema_failure(extract):
    text = '{"name": "John", "age": "thirty"}'
    assert extract(text, schema=Person) is None  # non-strict: None, like "not found"
    with pytest.raises(JSONValidationError) as info:
        extract(text, schema=Person, strict=True)
    error = info.value
    assert isinstance(error, JSONExtractionError)
    assert "Person" in error.problem
    assert error.validation_error.errors()[0]["loc"] == ("age",)
    # Nothing found at all is the plain error, not a validation error.
    with pytest.raises(JSONExtractionError) as info:
        extract("nothing here", schema=Person, strict=True)
    assert type(info.value) is JSONExtractionError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{" * 20_000, None),
        ("{ " * 50_000, None),
        ("{'" * 30_000, None),
        ("[" * 5_000 + "x", None),
        ("[x] " * 5_000 + '{"a": 1}', {"a": 1}),
        ('{"a": [' + "1, " * 50_000, {"a": [1] * 50_000}),
    ],
    ids=["open-braces", "spaced-braces", "brace-quotes", "deep-array", "many-brackets", "long-truncated"],
)
def test_pathological_input(extract, text, expected):
    # No timing assertion (the suite's timeout bounds it): what matters is the answer.
    assert extract(text) == expected
