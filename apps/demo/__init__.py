"""Demo data for a fresh install: simulated LLM traffic and a few knowledge-base documents.

``manage.py llm_demo`` replays a seeded plan of calls against the bundled loopback simulator
through the real client and request log, so the dashboards have something to show without
network, keys or cost. A leaf app: it uses ``apps.llm`` and ``apps.knowledge``; nothing but its
own command and the tests import it.
"""
