"""Fixtures of the llm tests."""

from __future__ import annotations

import random

import pytest

from apps.llm.accounting.request_log import write_records
from tests.llm.dashboard.seeded import Seed, make_records


@pytest.fixture
def seed(db, django_user_model) -> Seed:
    users = [
        django_user_model.objects.create_user(email=f"user{i}@example.com", username=f"user{i}", password="x")
        for i in (1, 2)
    ]
    records = make_records(users, random.Random(20240607))
    assert write_records(records, store_text=True) == len(records)
    return Seed(records=records, users=users)
