"""What the demo calls say: support tickets, search queries, questions and Python's own docstrings.

The standard library's docstrings are real prose of realistic length that ships with every
install, so the prompts and demo documents look lived in without bundling any text.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Sequence
from importlib import import_module

__all__ = [
    "AUDIENCES",
    "KNOWLEDGE_QUESTIONS",
    "SEARCH_QUERIES",
    "SUMMARY_MODULES",
    "SUPPORT_QUESTIONS",
    "SUPPORT_SYSTEM",
    "docstring_sentences",
    "module_doc",
]

SUPPORT_SYSTEM = (
    "You are the support assistant of Acme Cloud, a hosting service. Answer in a friendly, "
    "concise way. Rules: never promise refunds (say a human will review the request); link to "
    "https://status.acme.example for outages; billing questions about invoices older than 12 "
    "months go to billing@acme.example; never ask for passwords or full card numbers; if the "
    "customer is angry, apologise once and move to concrete next steps; when unsure, say you "
    "will escalate to a human within one business day. Plans: Starter (1 vCPU, 1 GB), Team "
    "(4 vCPU, 8 GB, 3 seats), Business (16 vCPU, 64 GB, SSO, 99.95% SLA). Backups run nightly "
    "and are kept 14 days on Team and 35 days on Business. Data centres: Frankfurt, Virginia, "
    "Singapore. Support hours: 24/7 chat, phone on weekdays 8:00-18:00 CET."
)
SUPPORT_QUESTIONS = (
    "How do I reset my password?",
    "Can I move my project from Frankfurt to Virginia?",
    "My deploy has been stuck on 'building' for twenty minutes, what should I do?",
    "Why was I charged twice this month?",
    "How long do you keep backups on the Team plan?",
    "Do you support single sign-on?",
    "The dashboard shows a 502 error for my app.",
    "Can I downgrade from Business to Team without losing data?",
    "How do I add a teammate to my account?",
    "Is there an SLA on the Starter plan?",
    "I want a refund for last month's outage.",
    "How do I restore yesterday's backup?",
)
SEARCH_QUERIES = (
    "parse a csv file with a header",
    "serialize python objects to json",
    "sort a list with a heap",
    "compare two texts line by line",
    "generate a random sample",
    "compute a median",
    "regular expression groups",
    "unique identifiers",
    "hash a file",
    "command line arguments",
    "schedule an event",
    "count items in a list",
)
KNOWLEDGE_QUESTIONS = (
    "How do I write JSON to a file?",
    "What does csv.DictReader do?",
    "How can I compute the median of a list?",
    "How do I find the closest matches to a word?",
    "What is a heap queue?",
    "How do I shuffle a list in place?",
    "What regular expression flags exist?",
    "How do I read a CSV file with a custom delimiter?",
    "What is the difference between mean and median?",
    "How do I escape special characters in a regex?",
)
SUMMARY_MODULES = (
    "json",
    "csv",
    "statistics",
    "argparse",
    "re",
    "uuid",
    "hashlib",
    "heapq",
    "itertools",
    "random",
    "sched",
    "typing",
    "difflib",
    "collections",
)
AUDIENCES = ("a new developer", "an experienced engineer")


def module_doc(name: str) -> str:
    """The docstring of a standard library module, dedented."""
    return textwrap.dedent(inspect.getdoc(import_module(name)) or "")


def docstring_sentences(names: Sequence[str]) -> list[str]:
    """Sentences of the modules' docstrings, of a length that reads as a search passage."""
    text = " ".join(" ".join(module_doc(n).split()) for n in names)
    return [s.strip() + "." for s in text.split(". ") if 40 <= len(s.strip()) <= 300]
