"""Loaded with ``-p`` before pytest-django reads the settings: pins the test environment."""

import os

os.environ.setdefault("DJANGO_ENV", "test")
