"""The LLM app's admin: one module per admin, imported here so that Django registers them.

``base`` and ``formatting`` hold what they share; ``dashboard`` is the cost dashboard's view,
served from the daily-usage admin (``usage``); ``traces`` lists traces and shows each one's
timeline. ``LLMCostMixin`` (``subjects``) gives any other app's ModelAdmin an "LLM cost" field:
the calls made about its objects (``llm_context(subject=obj)``), linked to the request log.
"""

from apps.llm.admin import budgets, prices, request_log, traces, usage  # noqa: F401
from apps.llm.admin.subjects import LLMCostMixin

__all__ = ["LLMCostMixin"]
