"""The Django app of the demo data; it has no models, only the ``llm_demo`` command."""

from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "apps.demo"
    label = "demo"
    verbose_name = "Demo data"
