from typing import Any

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Platform plumbing: pgvector, the task broker's schema, health and heartbeats."""

    name = "apps.core"
    label = "core"
    verbose_name = "Platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.core import checks  # noqa: F401  (registers the system checks)

        disconnect_telegram_login_notices()
        unloop_import_export_changelists()


def disconnect_telegram_login_notices() -> None:
    """django-cfg sends a Telegram message on every admin login, failed login and lockout.

    The project configures no Telegram bot, so each would only log the ERROR "Telegram is not
    configured" (django_cfg.middleware.admin_notifications connects them when imported).
    """
    from axes.signals import user_locked_out, user_login_failed
    from django.contrib.auth.signals import user_logged_in
    from django_cfg.core.state.registry import get_current_config
    from django_cfg.middleware import admin_notifications as notices

    config = get_current_config()
    if config is not None and config.telegram is not None:
        return
    user_logged_in.disconnect(notices.notify_admin_login_success)
    # These two exist only if axes imported cleanly there.
    if hasattr(notices, "notify_failed_admin_login"):
        user_login_failed.disconnect(notices.notify_failed_admin_login)
        user_locked_out.disconnect(notices.notify_admin_lockout)


def unloop_import_export_changelists() -> None:
    """django-cfg's admins set ``change_list_template`` to import-export's own template on the class,
    which import-export then takes as the base that template extends: the changelist extends itself
    (TemplateDoesNotExist, a 500 on the Users list). Their base is the plain changelist."""
    from django.contrib import admin

    registry: dict[Any, Any] = admin.site._registry  # import-export's attributes are not in the stubs
    for model_admin in registry.values():
        base = getattr(model_admin, "ie_base_change_list_template", None)
        if base is not None and base.startswith("admin/import_export/"):
            model_admin.ie_base_change_list_template = "admin/change_list.html"
