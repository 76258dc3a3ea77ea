"""What the site trusts: hosts, origins, HTTPS, proxy headers and login attempts (README "Security").

django-cfg's SecurityBuilder writes these settings; in production it widens them beyond what
the environment says, so ``ProjectConfig`` lays the settings below over its output.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django_cfg import AxesConfig

from .env import Env

# django-cfg puts it first in MIDDLEWARE: it copies the first X-Forwarded-For entry into
# REMOTE_ADDR, an address any client can write when no proxy overwrites the header.
REAL_IP_MIDDLEWARE = "django_cfg.middleware.real_ip.RealIPMiddleware"

PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]


def axes_config(env: Env) -> AxesConfig:
    """django-axes: lock out a client address, and an account, after too many failed logins."""
    limit = env.login_lockout_after
    return AxesConfig(
        enabled=limit > 0,
        failure_limit=limit or None,
        verbose=False,
        # Without a proxy, X-Forwarded-For and CF-Connecting-IP are whatever the client sends:
        # rotating them would escape an address lockout. (django-cfg's default, one proxy, finds
        # no address at all in a direct connection.) Behind one, the proxy appends the address
        # it saw to X-Forwarded-For: the right-most entry (AXES_IPWARE_PROXY_ORDER below).
        ipware_meta_precedence_order=["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if env.behind_proxy else ["REMOTE_ADDR"],
        ipware_proxy_count=1 if env.behind_proxy else 0,
    )


def security_settings(env: Env) -> dict[str, Any]:
    """Settings laid over django-cfg's, in every environment."""
    settings: dict[str, Any] = {
        "AUTH_PASSWORD_VALIDATORS": PASSWORD_VALIDATORS,
        # AxesConfig.cooloff_time counts whole hours.
        "AXES_COOLOFF_TIME": timedelta(minutes=env.login_cooloff_minutes),
        # Per address stops one client; per account stops guessing one password from many addresses.
        "AXES_LOCKOUT_PARAMETERS": ["ip_address", "username"],
        "AXES_IPWARE_PROXY_ORDER": "right-most",
        # Load balancers probe over plain HTTP; a redirect would look healthy to them.
        "SECURE_REDIRECT_EXEMPT": [r"^healthz$"],
        "HEALTH_TOKEN": env.health_token.get_secret_value() if env.health_token else None,
    }
    if env.django_env == "production":
        settings |= production_hosts(env.allowed_hosts)
        # django-cfg trusts X-Forwarded-Proto in every production deployment; only a proxy that
        # sets it (and drops the client's) makes it true.
        settings["SECURE_PROXY_SSL_HEADER"] = ("HTTP_X_FORWARDED_PROTO", "https") if env.behind_proxy else None
    return settings


def production_hosts(hosts: list[str]) -> dict[str, Any]:
    """Exactly ``ALLOWED_HOSTS`` and their HTTPS origins.

    django-cfg adds its site_url and api_url (http://localhost:3000 and :8000 by default) to the
    origins, desktop-app schemes to the CORS regexes, and, when it detects a container, the host
    name, private address ranges, ``.svc`` and ``.cluster.local`` to ALLOWED_HOSTS.
    """
    origins = []
    for host in hosts:
        if host == "*":
            continue
        # ".example.com" is the domain and its subdomains; CSRF takes "*." for that.
        origins.append(f"https://*{host}" if host.startswith(".") else f"https://{host}")
    return {
        "ALLOWED_HOSTS": list(hosts),
        "CSRF_TRUSTED_ORIGINS": origins,
        "CORS_ALLOWED_ORIGINS": [origin for origin in origins if "*" not in origin],
        "CORS_ALLOWED_ORIGIN_REGEXES": [],
    }


def revise_generated_settings(settings: dict[str, Any], env: Env) -> dict[str, Any]:
    """What ``security_settings`` cannot replace wholesale: edits of django-cfg's lists."""
    if not env.behind_proxy:
        settings["MIDDLEWARE"] = [name for name in settings["MIDDLEWARE"] if name != REAL_IP_MIDDLEWARE]
    # Its hint names django-cfg's ADMIN_ACCESS__PATH; core.W001 says the same and names ADMIN_URL.
    silenced = settings.setdefault("SILENCED_SYSTEM_CHECKS", [])
    if "django_cfg.W011" not in silenced:
        silenced.append("django_cfg.W011")
    return settings
