"""The usage dashboard in a real browser: Playwright driving Debian's Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"  # git-ignored
PASSWORD = "browser-test-password"

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Chart.js draws asynchronously: a canvas "has content" once some pixel is not transparent.
PAINTED = """() => [...document.querySelectorAll('canvas[data-llm-chart]')].map(canvas => {
    const {width, height} = canvas;
    if (!width || !height) return false;
    const pixels = canvas.getContext('2d').getImageData(0, 0, width, height).data;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
    return false;
})"""
#: The labels Chart.js drew on the money axes (static/llm/dashboard.js formats them as apps/llm/money.py does).
MONEY_TICKS = """() => ['spend', 'features', 'users'].flatMap(name => {
    const chart = Chart.getChart(document.querySelector(`canvas[data-llm-chart="${name}"]`));
    const axis = chart.options.indexAxis === 'y' ? chart.scales.x : chart.scales.y;
    return axis.ticks.map(t => t.label);
})"""
SPEND_DATA = """() => JSON.stringify(Chart.getChart(
    document.querySelector('canvas[data-llm-chart="spend"]')).data.datasets.map(d => d.data))"""


def test_dashboard_renders_charts_and_a_filter_changes_them(live_server, browser, django_user_model, price_table):
    call_command("llm_demo", "--calls", "80", "--days", "7", "--seed", "3", "--no-documents")
    django_user_model.objects.create_superuser(email="browser@example.com", password=PASSWORD, username="browser")

    page = browser.new_page(viewport={"width": 1440, "height": 2200})
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "browser@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)

    page.goto(f"{live_server.url}{reverse('admin:llm_dashboard')}?period=7")
    page.wait_for_function(f"() => ({PAINTED})().length >= 4 && ({PAINTED})().every(Boolean)", timeout=20_000)
    ticks = page.evaluate(MONEY_TICKS)
    assert ticks and all(re.fullmatch(r"\$0|\$[\d,]+\.\d\d|\$0\.\d{2,4}|\$0\.0*[1-9]\d{0,3}", t) for t in ticks), ticks
    assert "Priced exactly" in page.inner_text("#llm-accuracy")
    figures_before = page.inner_text("#llm-figures")
    spend_before = json.loads(page.evaluate(SPEND_DATA))
    assert any(any(v for v in series) for series in spend_before)

    page.select_option("select[name=model]", "openai/gpt-4o-mini")
    with page.expect_navigation():
        page.click("#llm-dashboard-filters [type=submit]")
    page.wait_for_function(f"() => ({PAINTED})().every(Boolean)", timeout=20_000)
    assert "model=openai%2Fgpt-4o-mini" in page.url or "model=openai/gpt-4o-mini" in page.url
    assert page.inner_text("#llm-figures") != figures_before
    assert json.loads(page.evaluate(SPEND_DATA)) != spend_before

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
