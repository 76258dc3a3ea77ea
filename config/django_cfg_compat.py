"""Keep django-cfg's side effects inside ``var/`` and off the network, and its sections out of the
admin's navigation.

Import this before anything imports ``django_cfg``. Each patch names the django-cfg
behaviour it changes; re-check them when upgrading django-cfg (pinned in requirements.txt).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .env import load_env

if TYPE_CHECKING:
    from django.http import HttpRequest
    from django_cfg import UnfoldConfig

_LOGGER_MODULE = "django_cfg.modules.django_logging.django_logger"


def _relocate_logs(module: ModuleType) -> None:
    # DjangoLogger writes to Path(os.getcwd()) / "logs" (no setting for it); point that at var/.
    real_path = module.Path
    var_dir = load_env().var_dir

    def path(*parts: str | os.PathLike[str]) -> Path:
        if len(parts) == 1 and str(parts[0]) == os.getcwd():
            return var_dir
        return real_path(*parts)

    module.Path = path  # type: ignore[attr-defined]  # replacing a global of django-cfg's module


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches the logger module the moment django-cfg's package init imports it."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name != _LOGGER_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def patched_exec(module: ModuleType) -> None:
            exec_module(module)
            _relocate_logs(module)

        loader.exec_module = patched_exec  # type: ignore[method-assign]  # patching django-cfg's loader instance
        return spec


def install() -> None:
    load_env().var_dir.mkdir(exist_ok=True)
    # django-cfg also mirrors every log line to /tmp/djangocfg/debug.log unless told not to.
    os.environ.setdefault("DJANGO_LOG_TO_TMP", "false")
    if _LOGGER_MODULE in sys.modules:
        _relocate_logs(sys.modules[_LOGGER_MODULE])
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


def disable_network_and_codegen() -> None:
    """Call after settings are generated."""
    import django_cfg.startup.type_stubs as type_stubs
    from django_cfg.core.integration.version_checker import VersionChecker

    # The admin index asks pypi.org for django-cfg's latest version on every render.
    VersionChecker.get_latest_version = lambda self: None  # type: ignore[method-assign]  # monkeypatching a third-party class
    # In DEBUG it writes typings/ and pyrightconfig.json into the source tree.
    type_stubs._is_dev_context = lambda: False


# -- the admin's navigation --------------------------------------------------------------------


def project_unfold_settings(unfold: UnfoldConfig) -> dict[str, Any]:
    """``settings.UNFOLD`` with only the project's sections in the sidebar and on the index.

    ``UnfoldConfig.to_django_settings`` puts the sections of django-cfg's ``NavigationManager``
    (Dashboard, Users & Access, TOTP, Mail, Analytics...) before ``unfold.navigation``, with no
    option to leave them out; the admin index lists every installed app, alphabetically.
    """
    settings = unfold.to_django_settings()["UNFOLD"]
    sections = list(unfold.navigation)
    settings["SIDEBAR"]["navigation"] = lambda request=None: [section.to_dict() for section in sections]
    settings["DASHBOARD_CALLBACK"] = f"{__name__}.admin_index"
    return settings


def admin_index(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    """Unfold's DASHBOARD_CALLBACK: the index lists ``settings.ADMIN_INDEX``, in its order.

    The other apps' admins stay reachable by URL; they are not in the navigation.
    """
    from django.conf import settings

    # "app_label" and "app_label.Model" -> (app, model) entries of Django's app list
    models: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for app in context.get("app_list", []):
        for model in app["models"]:
            models.setdefault(app["app_label"], []).append((app, model))
            models[f"{app['app_label']}.{model['object_name']}"] = [(app, model)]
    app_list = []
    # Set by config/project.py; getattr: config/settings.py does not declare it to the type checker.
    for title, labels in getattr(settings, "ADMIN_INDEX", []):
        entries = [entry for label in labels for entry in models.get(label, [])]
        if not entries:
            continue  # nothing the user may see
        first_app, first_model = entries[0]
        # A section of one app links to that app's page, a mixed one to its first model.
        single_app = len({app["app_label"] for app, _ in entries}) == 1
        url = first_app["app_url"] if single_app else first_model["admin_url"]
        app_list.append({**first_app, "name": title, "app_url": url, "models": [model for _, model in entries]})
    context["app_list"] = app_list
    return context
