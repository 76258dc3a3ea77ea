from django.conf import settings
from django.conf.urls.static import static
from django.urls import URLPattern, URLResolver, include, path
from django.views.generic import RedirectView
from django_cfg import admin_urlpatterns

from apps.core.views import healthz

urlpatterns: list[URLPattern | URLResolver] = [
    path("healthz", healthz, name="healthz"),
    # The site is its admin (by name: the admin's URL is configurable).
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    *admin_urlpatterns(),
]

# django-cfg installs django-browser-reload in DEBUG; its middleware needs these routes.
if "django_browser_reload" in settings.INSTALLED_APPS:
    urlpatterns.append(path("__reload__/", include("django_browser_reload.urls")))

# Uploaded files, in development only (static() is empty unless DEBUG): elsewhere media is not
# public, and staff download documents through the admin's permission-checked view.
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
