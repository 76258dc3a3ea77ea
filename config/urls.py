from django.conf import settings
from django.urls import URLPattern, URLResolver, include, path
from django_cfg import admin_urlpatterns

from apps.core.views import healthz

urlpatterns: list[URLPattern | URLResolver] = [
    path("healthz", healthz, name="healthz"),
    *admin_urlpatterns(),
]

# django-cfg installs django-browser-reload in DEBUG; its middleware needs these routes.
if "django_browser_reload" in settings.INSTALLED_APPS:
    urlpatterns.append(path("__reload__/", include("django_browser_reload.urls")))
