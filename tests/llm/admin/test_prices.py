"""The price admin (apps/llm/admin/prices.py)."""

from __future__ import annotations

import pytest

from apps.llm.models import ModelPrice


@pytest.mark.django_db
def test_admin_lists_prices(admin_client):
    response = admin_client.get("/admin/llm/modelprice/", {"period": "current", "provider": "openai", "q": "gpt-4o"})
    assert response.status_code == 200
    assert b"gpt-4o-mini" in response.content and b"0.15" in response.content  # $/M
    row = ModelPrice.objects.get(provider="openai", model_id="gpt-4o-mini")
    assert admin_client.get(f"/admin/llm/modelprice/{row.pk}/change/").status_code == 200
