"""The project's ``DjangoConfig``: every Django setting derives from ``config.env.Env``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from django_cfg import (
    AxesConfig,
    DjangoConfig,
    NavigationItem,
    NavigationSection,
    StartupInfoMode,
    UnfoldConfig,
)
from django_cfg.core.types.enums import EnvironmentMode
from django_cfg.models.django.admin_access import AdminAccessConfig
from pydantic import PrivateAttr

from .broker import broker_settings
from .database import database_config, database_url
from .django_cfg_compat import project_unfold_settings
from .env import BASE_DIR, Env, secret_value
from .security import axes_config, revise_generated_settings, security_settings

# Only used outside production, where Env refuses to start without a real SECRET_KEY.
DEVELOPMENT_SECRET_KEY = "insecure-development-key-never-used-in-production-0123456789"


class AdminAccount(TypedDict):
    """``settings.ADMIN_ACCOUNT``: the account ``ensure_admin`` creates."""

    EMAIL: str
    PASSWORD: str | None


PROJECT_APPS = [
    "pgvector.django",
    "django_dramatiq",
    "dramatiq_crontab",
    "apps.core",
    "apps.llm",
    "apps.knowledge",
    "apps.demo",
]


# The admin index: these sections in this order, of these models ("app_label" for all of an app's).
ADMIN_INDEX = [
    ("LLM usage", ["llm"]),
    ("Knowledge base", ["knowledge"]),
    ("Users", ["django_cfg_accounts.CustomUser", "auth.Group", "axes.AccessAttempt"]),
    ("Background tasks", ["django_dramatiq"]),
]


class ProjectConfig(DjangoConfig):
    """Build with ``ProjectConfig.from_env(env)``; the fields below are the django-cfg ones we set."""

    project_name: str = "LLM Platform"
    project_description: str = "LLM client, cost accounting and knowledge base for Django"
    root_urlconf: str = "config.urls"
    wsgi_application: str = "config.wsgi.application"
    startup_info_mode: StartupInfoMode = StartupInfoMode.NONE
    show_ai_hints: bool = False
    project_apps: list[str] = PROJECT_APPS
    # Attributes LLM calls made during a request to its user (after authentication).
    custom_middleware: list[str] = ["apps.llm.accounting.middleware.LLMContextMiddleware"]
    # from_env sets the login lockout (config/security.py); off unless configured.
    axes: AxesConfig = AxesConfig(enabled=False)
    # The sidebar: these sections only (django_cfg_compat.project_unfold_settings drops django-cfg's).
    unfold: UnfoldConfig = UnfoldConfig(
        site_title="LLM Platform",
        site_header="LLM Platform",
        show_all_applications=False,
        navigation=[
            NavigationSection(
                title="LLM usage",
                open=True,
                items=[
                    NavigationItem(
                        title="Cost dashboard",
                        icon="monitoring",
                        link="admin:llm_dashboard",
                        permission="apps.llm.admin.usage.can_view_dashboard",
                    ),
                    NavigationItem(title="Request log", icon="receipt_long", link="admin:llm_llmrequest_changelist"),
                    NavigationItem(title="Budgets", icon="savings", link="admin:llm_budget_changelist"),
                    NavigationItem(
                        title="Daily usage", icon="calendar_month", link="admin:llm_llmusagedaily_changelist"
                    ),
                    NavigationItem(title="Model prices", icon="sell", link="admin:llm_modelprice_changelist"),
                ],
            ),
            NavigationSection(
                title="Knowledge base",
                open=True,
                items=[
                    NavigationItem(title="Documents", icon="description", link="admin:knowledge_document_changelist"),
                    NavigationItem(
                        title="Upload documents",
                        icon="upload_file",
                        link="admin:knowledge_document_upload",
                        permission=lambda request: request.user.has_perm("knowledge.add_document"),
                    ),
                    NavigationItem(
                        title="Search",
                        icon="search",
                        link="admin:knowledge_document_search",
                        permission=lambda request: request.user.has_perm("knowledge.view_chunk"),
                    ),
                    NavigationItem(title="Chunks", icon="segment", link="admin:knowledge_chunk_changelist"),
                ],
            ),
            NavigationSection(
                title="Users",
                items=[
                    NavigationItem(
                        title="Users", icon="person", link="admin:django_cfg_accounts_customuser_changelist"
                    ),
                    NavigationItem(title="Groups", icon="group", link="admin:auth_group_changelist"),
                    NavigationItem(title="Login lockouts", icon="lock", link="admin:axes_accessattempt_changelist"),
                ],
            ),
            NavigationSection(
                title="Background tasks",
                items=[NavigationItem(title="Tasks", icon="task", link="admin:django_dramatiq_task_changelist")],
            ),
        ],
    )

    _env: Env = PrivateAttr()
    _database_url: str = PrivateAttr()

    @classmethod
    def from_env(cls, env: Env) -> ProjectConfig:
        url = database_url(env)
        secret = env.secret_key.get_secret_value() if env.secret_key else DEVELOPMENT_SECRET_KEY
        config = cls(
            env_mode=EnvironmentMode(env.django_env),
            debug=env.debug,
            secret_key=secret,
            security_domains=env.allowed_hosts or ["localhost", "127.0.0.1"],
            databases={"default": database_config(url)},
            redis_url=env.redis_url,
            axes=axes_config(env),
            ssl_redirect=env.ssl_redirect,
            admin_access=AdminAccessConfig(path=env.admin_url),
        )
        # django-cfg's model_post_init re-reads DJANGO_ENV from os.environ; the Env given wins.
        object.__setattr__(config, "env_mode", EnvironmentMode(env.django_env))
        config._env = env
        config._database_url = url
        return config

    @property
    def base_dir(self) -> Path:
        # django-cfg puts (and creates) media/ and staticfiles/ under base_dir.
        return self._env.var_dir

    def get_additional_settings(self) -> dict[str, Any]:
        env = self._env
        extra = security_settings(env)
        if env.django_env == "test":
            # Production's manifest storage needs `collectstatic`, which tests do not run.
            extra["STORAGES"] = {
                "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            }
        return extra | {
            "BASE_DIR": BASE_DIR,
            "VAR_DIR": env.var_dir,
            "STATICFILES_DIRS": [BASE_DIR / "static"],
            "CACHES": {"default": _cache(env, "default"), "llm": _cache(env, "llm", max_entries=1000)},
            "DRAMATIQ_BROKER": broker_settings(
                redis_url=env.redis_url, database_url=self._database_url, testing=env.django_env == "test"
            ),
            "DRAMATIQ_TASKS_DATABASE": "default",
            "DRAMATIQ_AUTODISCOVER_MODULES": ["tasks"],
            "DRAMATIQ_CRONTAB": {"REDIS_URL": env.redis_url},
            "LOGGING": LOGGING,
            "ENVIRONMENT": env.django_env,
            "ADMIN_ACCOUNT": AdminAccount(EMAIL=env.admin_email, PASSWORD=secret_value(env.admin_password)),
            "EMBEDDED_POSTGRES_DIR": None if env.database_url else env.var_dir / "pgdata",
            "LLM": env.llm,
            "KNOWLEDGE": env.knowledge,
            "UNFOLD": project_unfold_settings(self.unfold),
            "ADMIN_INDEX": ADMIN_INDEX,
            # The admin is the site: after logging in, and for views that need a login.
            "LOGIN_REDIRECT_URL": "admin:index",
            "LOGIN_URL": "admin:login",
            # django-cfg makes it http://localhost:8000/media/ in development, whatever the port;
            # config/urls.py serves it in development only (staff download documents in the admin).
            "MEDIA_URL": "/media/",
            # Form fields other than files; uploads are capped per file while they stream in
            # (apps/knowledge/uploads.py), and a file over this size goes to a temporary file.
            "DATA_UPLOAD_MAX_MEMORY_SIZE": 10 * 1024 * 1024,
            "FILE_UPLOAD_MAX_MEMORY_SIZE": 2 * 1024 * 1024,
        }

    def get_all_settings(self) -> dict[str, Any]:
        return revise_generated_settings(super().get_all_settings(), self._env)


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        # Its INFO lines narrate every attach to the already running server.
        "embedded_postgres": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # Otherwise it logs each run of the scheduler's 5-second lock refresh.
        "apscheduler": {"level": "WARNING"},
    },
}


def _cache(env: Env, alias: str, max_entries: int = 300) -> dict[str, Any]:
    """Redis when configured, else files under var/cache: both are shared across processes."""
    if env.redis_url:
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env.redis_url,
            "KEY_PREFIX": alias,
        }
    return {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(env.var_dir / "cache" / alias),
        "OPTIONS": {"MAX_ENTRIES": max_entries},
    }
