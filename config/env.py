"""Every environment variable the project reads, parsed and validated in one place.

Settings, management commands and the LLM client take their configuration from
``load_env()``; nothing else in the project reads ``os.environ`` for configuration.
A missing or malformed variable raises ``ConfigError`` with one line that names it.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BASE_DIR = Path(__file__).resolve().parent.parent

Environment = Literal["development", "production", "test"]

# URL-safe path segments, each ending in "/" (what django-cfg's admin_access.path accepts).
ADMIN_URL_RE = re.compile(r"^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*/$")


class ConfigError(Exception):
    """A configuration variable is missing or invalid; the message names it."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _require_scheme(value: str | None, schemes: tuple[str, ...], what: str) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"expected {what} ({' or '.join(s + '://' for s in schemes)}...)")
    return value


class Env(BaseSettings):
    model_config = SettingsConfigDict(env_file_encoding="utf-8", extra="ignore", case_sensitive=False)

    django_env: Environment = Field("production", description="development, production or test")
    secret_key: SecretStr | None = None
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    database_url: str | None = None
    redis_url: str | None = None

    openrouter_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openai_base_url: str = "https://api.openai.com/v1"

    # The request log: "async" (background writer with a spool file), "sync" (in the
    # calling thread; tests) or "off". Prompt/response text is stored only if allowed.
    llm_request_log: Literal["async", "sync", "off"] | None = None
    llm_store_text: bool | None = None
    llm_text_limit: int = Field(20_000, ge=0)
    llm_retention_days: int = Field(90, ge=1)
    # The database is down: admit calls against the last known budgets ("allow") or refuse them.
    llm_budgets_when_db_down: Literal["allow", "deny"] = "allow"
    # A model without a price under a hard budget limit: charge a conservative estimate, refuse it, or allow it.
    llm_unpriced: Literal["refuse", "estimate", "allow"] = "estimate"
    # OpenTelemetry's own variables: each LLM call exported as a span to this OTLP/HTTP
    # endpoint (base URL, e.g. http://localhost:4318); unset: no export.
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str | None = None

    # Knowledge base. The embedding model defaults to OpenAI's when a key is set, else the
    # local MiniLM model (no key, no network).
    knowledge_embedding_model: str | None = None
    knowledge_answer_model: str = "openai/gpt-4o-mini"
    knowledge_chunk_tokens: int = Field(512, ge=16)
    knowledge_chunk_overlap: int = Field(64, ge=0)
    knowledge_max_upload_mb: int = Field(25, ge=1)
    # 80: recall@10 0.98 at 100k chunks, p50 ~2 ms (bench_search.py); 40 only just reaches 0.95.
    knowledge_ef_search: int = Field(80, ge=1, le=1000)
    knowledge_embed_batch: int = Field(64, ge=1, le=2048, description="chunks per embedding call (progress step)")
    knowledge_processing_timeout: int = Field(900, ge=30, description="seconds before a stuck document is retried")
    knowledge_search_mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    knowledge_max_attempts: int = Field(3, ge=1, description="claims of a document before it is failed")
    knowledge_extraction_memory_mb: int = Field(1024, ge=128, description="memory of the .docx/PDF/HTML reader")
    knowledge_extraction_timeout: int = Field(120, ge=1, description="seconds of the .docx/PDF/HTML reader")

    admin_email: str = "admin@example.com"
    admin_password: SecretStr | None = None

    # Security (README "Security").
    # Failed logins before a client address or an account is locked out; 0 turns the lockout off.
    # Unset: 5 in production, off in development and test (tests and `make run` log in often).
    login_failure_limit: int | None = Field(None, ge=0)
    login_cooloff_minutes: int = Field(15, ge=1)
    # Unset: on in production. Off when the proxy in front redirects HTTP to HTTPS itself.
    secure_ssl_redirect: bool | None = None
    # A reverse proxy terminates TLS and sets X-Forwarded-Proto and X-Forwarded-For; without
    # one these headers come from the client and are not trusted.
    behind_proxy: bool = False
    admin_url: str = "admin/"
    # Lets monitoring read /healthz's details (versions, queue depth) without a staff session.
    health_token: SecretStr | None = None

    _split_hosts = field_validator("allowed_hosts", mode="before")(_split_csv)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, values: dict) -> dict:
        # `OPENAI_API_KEY=` in a .env file means "not set", not "an empty key".
        return {key: value for key, value in values.items() if value != ""}

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return _require_scheme(value, ("postgres", "postgresql"), "a PostgreSQL URL")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return _require_scheme(value, ("redis", "rediss"), "a Redis URL")

    @field_validator("llm_base_url", "openrouter_base_url", "openai_base_url", "otel_exporter_otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _require_scheme(value, ("http", "https"), "an http(s) URL")

    @field_validator("admin_url")
    @classmethod
    def _admin_url(cls, value: str) -> str:
        path = value.strip().strip("/") + "/"
        if ".." in path or not ADMIN_URL_RE.match(path):
            raise ValueError("expected a URL path such as 'k3J9x-Qw2/' (letters, digits, '-', '_', '.', '~', '/')")
        return path

    @field_validator("health_token")
    @classmethod
    def _health_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("at least 16 random characters")
        return value

    @model_validator(mode="after")
    def _production_requirements(self) -> Env:
        if self.django_env != "production":
            return self
        if self.secret_key is None or len(self.secret_key.get_secret_value()) < 50:
            raise ConfigError("SECRET_KEY: required in production, at least 50 random characters")
        if not self.allowed_hosts:
            raise ConfigError("ALLOWED_HOSTS: required in production, comma-separated host names")
        return self

    @property
    def debug(self) -> bool:
        return self.django_env == "development"

    @property
    def login_lockout_after(self) -> int:
        """Failed logins before a lockout; 0: no lockout."""
        if self.login_failure_limit is not None:
            return self.login_failure_limit
        return 5 if self.django_env == "production" else 0

    @property
    def ssl_redirect(self) -> bool:
        if self.secure_ssl_redirect is not None:
            return self.secure_ssl_redirect
        return self.django_env == "production"

    @property
    def llm(self) -> dict:
        """The ``LLM`` Django setting (read by ``apps.llm.conf``), with defaults that depend on the environment."""
        return {
            "PROVIDERS": {
                "openrouter": {"API_KEY": secret_value(self.openrouter_api_key), "BASE_URL": self.openrouter_base_url},
                "openai": {"API_KEY": secret_value(self.openai_api_key), "BASE_URL": self.openai_base_url},
                "compatible": {"API_KEY": secret_value(self.llm_api_key), "BASE_URL": self.llm_base_url},
            },
            "REQUEST_LOG": self.llm_request_log or ("sync" if self.django_env == "test" else "async"),
            "STORE_TEXT": self.llm_store_text if self.llm_store_text is not None else self.django_env != "production",
            "TEXT_LIMIT": self.llm_text_limit,
            "RETENTION_DAYS": self.llm_retention_days,
            "SPOOL_DIR": self.var_dir / "spool" / "llm-requests",
            # tiktoken's own TIKTOKEN_CACHE_DIR / DATA_GYM_CACHE_DIR, when set, win over this.
            "TOKENIZER_CACHE_DIR": self.var_dir / "cache" / "tiktoken",
            "BUDGETS_WHEN_DB_DOWN": self.llm_budgets_when_db_down,
            "UNPRICED": self.llm_unpriced,
            "OTEL_ENDPOINT": self.otel_exporter_otlp_endpoint,
            "OTEL_SERVICE_NAME": self.otel_service_name,
        }

    @property
    def knowledge(self) -> dict:
        """The ``KNOWLEDGE`` Django setting."""
        remote = self.openai_api_key or self.openrouter_api_key
        return {
            "EMBEDDING_MODEL": self.knowledge_embedding_model
            or ("text-embedding-3-small" if remote else "local/all-minilm-l6-v2"),
            "ANSWER_MODEL": self.knowledge_answer_model,
            "CHUNK_TOKENS": self.knowledge_chunk_tokens,
            "CHUNK_OVERLAP": self.knowledge_chunk_overlap,
            "MAX_UPLOAD_BYTES": self.knowledge_max_upload_mb * 1024 * 1024,
            "EF_SEARCH": self.knowledge_ef_search,
            "EMBED_BATCH": self.knowledge_embed_batch,
            "PROCESSING_TIMEOUT": self.knowledge_processing_timeout,
            "SEARCH_MODE": self.knowledge_search_mode,
            "MAX_ATTEMPTS": self.knowledge_max_attempts,
            "EXTRACTION_MEMORY_BYTES": self.knowledge_extraction_memory_mb * 1024 * 1024,
            "EXTRACTION_TIMEOUT": self.knowledge_extraction_timeout,
        }

    @property
    def var_dir(self) -> Path:
        """Runtime files (database, logs, media, caches): git-ignored, never in the source tree."""
        return BASE_DIR / "var"


def secret_value(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _describe(error: ErrorDetails) -> str:
    name = str(error["loc"][0]).upper() if error["loc"] else "configuration"
    message = error["msg"].removeprefix("Value error, ")
    # Never echo the offending value: it may be a secret.
    return f"{name}: {message}"


@lru_cache(maxsize=1)
def load_env() -> Env:
    """The validated environment; raises ``ConfigError`` naming the first bad variable."""
    # Tests must not pick up a developer's keys or database from .env.
    env_file = None if os.environ.get("DJANGO_ENV") == "test" else BASE_DIR / ".env"
    try:
        return Env(_env_file=env_file)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from None
