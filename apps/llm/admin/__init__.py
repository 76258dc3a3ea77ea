"""The LLM app's admin: one module per admin, imported here so that Django registers them.

``base`` and ``formatting`` hold what they share; ``dashboard`` is the cost dashboard's view,
served from the daily-usage admin (``usage``).
"""

from apps.llm.admin import budgets, prices, request_log, usage  # noqa: F401
