"""The daily usage admin (apps/llm/admin/usage.py) and the admin's navigation to the usage pages."""

from __future__ import annotations

from tests.llm.dashboard.seeded import DASHBOARD, LOG


def test_daily_usage_admin_and_navigation(seed, staff_client):
    response = staff_client.get("/admin/llm/llmusagedaily/", {"model": "gpt-4o-mini"})
    assert response.status_code == 200
    assert sum(r.requests for r in response.context["cl"].result_list) == sum(
        r.model == "gpt-4o-mini" for r in seed.records
    )
    assert DASHBOARD in response.content.decode()
    assert staff_client.get("/admin/llm/llmusagedaily/add/").status_code == 403
    # The sidebar links to the dashboard and the usage pages.
    index = staff_client.get("/admin/").content.decode()
    for link in (DASHBOARD, LOG, "/admin/llm/budget/", "/admin/llm/llmusagedaily/"):
        assert f'href="{link}"' in index
