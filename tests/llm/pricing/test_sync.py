"""The model-pricing sync: command, actor and admin, on real catalogs and a real database.

The catalogs are real OpenRouter snapshots (tests/fixtures/pricing/SOURCES.md). Expected
results are computed here from the raw JSON with plain dict comparisons (a missing price key
is "0"), never with the parser under test. HTTP goes to loopback servers only.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from dramatiq_crontab import scheduler

from apps.llm.models import ModelPrice, PricingSyncRun
from apps.llm.pricing.catalogs import OPENAI_TABLE, FetchError
from apps.llm.pricing.sheets import PRICE_COMPONENTS
from apps.llm.tasks import PRICING_SYNC_RETRIES, sync_model_pricing
from apps.llm.testing.simulator import OpenAISimulator, SimResponse
from config.env import BASE_DIR, load_env
from tests.helpers import CATALOGS, free_port

DEC = CATALOGS / "openrouter-models-2025-12-18.json"
JAN = CATALOGS / "openrouter-models-2026-01-29.json"
AUG = CATALOGS / "openrouter-models-2026-08-18.json"
EMB = CATALOGS / "openrouter-embeddings-models-2025-12-14.json"
ZERO = Decimal(0)
TIER_CONDITIONS = ("min_prompt_tokens", "utc_start", "utc_end")


# -- independent expectations from the raw JSON ------------------------------------------------------


@functools.cache
def raw(path: Path) -> dict:
    return json.loads(path.read_text())


def entries(path: Path) -> dict[str, dict]:
    return {entry["id"]: entry for entry in raw(path)["data"]}


def raw_prices(entry: dict) -> dict[str, Decimal]:
    return {key: Decimal(value) for key, value in entry["pricing"].items() if key != "overrides"}


def raw_tiers(entry: dict) -> list[dict]:
    return [
        {k: v if k in TIER_CONDITIONS else Decimal(v) for k, v in tier.items()}
        for tier in entry["pricing"].get("overrides", [])
    ]


def valid(entry: dict) -> bool:
    """What the catalog's own data says is usable: no negative price (the -1 sentinel of routers)."""
    return all(value >= 0 for value in raw_prices(entry).values())


def repriced(old: dict, new: dict) -> dict[str, tuple[Decimal, Decimal]]:
    """Per component (old, new), a missing key being "0"."""
    a, b = raw_prices(old), raw_prices(new)
    return {k: (a.get(k, ZERO), b.get(k, ZERO)) for k in a.keys() | b.keys() if a.get(k, ZERO) != b.get(k, ZERO)}


def stored_price(row: ModelPrice, component: str) -> Decimal:
    if component in PRICE_COMPONENTS:
        return getattr(row, component)
    return Decimal(row.extra_prices.get(component, "0"))


# -- helpers -------------------------------------------------------------------------------------------


def sync(*args: str | Path) -> tuple[str, str]:
    """Run the command; returns (stdout, stderr)."""
    out, err = StringIO(), StringIO()
    call_command("sync_model_pricing", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def snapshot() -> list[tuple]:
    """Every price row, as the history and the cost lookups see it."""
    fields = [
        "pk",
        "provider",
        "model_id",
        *PRICE_COMPONENTS,
        "extra_prices",
        "tiers",
        "is_active",
        "valid_from",
        "valid_to",
    ]
    return list(ModelPrice.objects.order_by("pk").values_list(*fields))


def last_run() -> PricingSyncRun:
    return PricingSyncRun.objects.order_by("-pk").first()


def openrouter_from(path: Path) -> PricingSyncRun:
    """Start from an empty OpenRouter table synced from ``path`` (every valid model added)."""
    ModelPrice.objects.filter(provider="openrouter").delete()
    sync("--from-file", path)
    return last_run()


def write_catalog(tmp_path: Path, name: str, data: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"data": data}))
    return path


def entry(model_id: str, **pricing: str) -> dict:
    return {
        "id": model_id,
        "name": model_id,
        "context_length": 1000,
        "pricing": pricing,
        "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"]},
    }


# -- 1. December -> January: exactly the catalog's differences, with history ------------------------


@pytest.mark.django_db
def test_december_to_january_reports_exactly_the_catalog_differences():
    dec, jan = entries(DEC), entries(JAN)
    dec_valid = {m for m, e in dec.items() if valid(e)}
    jan_valid = {m for m, e in jan.items() if valid(e)}
    assert set(dec) - dec_valid == set(jan) - jan_valid == {"openrouter/auto", "openrouter/bodybuilder"}
    expected_added = jan_valid - dec_valid
    expected_deactivated = dec_valid - set(jan)
    expected_changed = {m: d for m in dec_valid & jan_valid if (d := repriced(dec[m], jan[m]))}
    assert (len(expected_added), len(expected_deactivated)) == (24, 26)  # as SOURCES.md counts them
    assert not any("overrides" in e["pricing"] for e in [*dec.values(), *jan.values()])

    december = openrouter_from(DEC)
    assert (december.status, december.added, december.rejected) == ("ok", len(dec_valid), 2)
    between = timezone.now()
    before = snapshot()

    # A dry run prints the same summary and writes nothing, not even a run.
    dry_out, dry_err = sync("--from-file", JAN, "--dry-run")
    assert snapshot() == before and last_run() == december
    assert "dry run: nothing was written" in dry_out and "rolled back" in dry_err

    out, err = sync("--from-file", JAN)
    run = last_run()
    report = run.report
    assert {a["model_id"] for a in report["added"]} == expected_added
    assert set(report["deactivated"]) == expected_deactivated
    changed = {
        c["model_id"]: {k: (Decimal(old), Decimal(new)) for k, (old, new) in c["components"].items()}
        for c in report["changed"]
    }
    assert changed == expected_changed
    assert {r["model_id"] for r in report["rejected"]} == {"openrouter/auto", "openrouter/bodybuilder"}
    assert report["reactivated"] == []
    assert run.unchanged == len(dec_valid & jan_valid) - len(expected_changed)
    assert (run.added, run.changed, run.deactivated) == (24, len(expected_changed), 26)
    counts = f"24 added, {len(expected_changed)} changed, 26 deactivated, 0 reactivated"
    assert counts in out and counts in dry_out
    assert "~ deepseek/deepseek-r1  prompt $0.3/M -> $0.7/M; completion $1.2/M -> $2.5/M" in out
    assert "parsed models catalog: 347 entries, 345 accepted, 2 rejected" in err

    # History: what was in force before the sync still is, for that time; the new prices start
    # at the sync time; nothing was deleted.
    synced_at = run.started_at
    assert datetime.fromisoformat(report["synced_at"]) == synced_at
    for model_id, diff in expected_changed.items():
        rows = ModelPrice.objects.filter(provider="openrouter", model_id=model_id)
        old = rows.get(valid_from__lte=between, valid_to__gt=between)
        new = rows.get(valid_to__isnull=True)
        assert old.valid_to == new.valid_from == synced_at and new.is_active
        for component, (old_price, new_price) in diff.items():
            assert (stored_price(old, component), stored_price(new, component)) == (old_price, new_price)
    for model_id in expected_deactivated:
        row = ModelPrice.objects.get(provider="openrouter", model_id=model_id)
        assert (row.is_active, row.valid_to) == (False, None)
    assert set(ModelPrice.objects.filter(valid_from=synced_at).values_list("model_id", flat=True)) == (
        expected_added | set(expected_changed)
    )
    rows_before = {
        (provider, model_id): (pk, valid_from)
        for pk, provider, model_id, *_, valid_from, valid_to in before
        if valid_to is None
    }
    for model_id in (dec_valid & jan_valid) - set(expected_changed):
        row = ModelPrice.objects.current().get(provider="openrouter", model_id=model_id)
        assert (row.pk, row.valid_from) == rows_before["openrouter", model_id]

    # The same sync again changes nothing.
    before = snapshot()
    out, _ = sync("--from-file", JAN)
    again = last_run()
    assert (again.added, again.changed, again.deactivated, again.reactivated) == (0, 0, 0, 0)
    assert again.unchanged == len(jan_valid) and "Prices are up to date." in out
    assert snapshot() == before


@pytest.mark.django_db
def test_a_model_listed_again_is_reactivated():
    openrouter_from(DEC)
    sync("--from-file", JAN)
    withdrawn = set(last_run().report["deactivated"])
    rows = {r.model_id: r.pk for r in ModelPrice.objects.filter(model_id__in=withdrawn)}

    sync("--from-file", DEC)
    run = last_run()
    assert set(run.report["reactivated"]) == withdrawn and run.deactivated == 24
    # Same price as when withdrawn: the very row comes back, its history untouched.
    current = ModelPrice.objects.current().filter(provider="openrouter", model_id__in=withdrawn)
    assert {r.model_id: r.pk for r in current} == rows


# -- 2. the 2026-08 format and every output modality ----------------------------------------------------


@pytest.mark.django_db
def test_august_format_and_every_modality_are_stored_with_their_components():
    ModelPrice.objects.filter(provider="openrouter").delete()
    sync("--from-file", AUG, "--embeddings-from-file", EMB)
    run = last_run()
    catalog = {**entries(AUG), **entries(EMB)}
    good = {m: e for m, e in catalog.items() if valid(e)}
    assert (run.added, run.rejected, len(good)) == (409 + 21, 5, 430)
    assert [(c["kind"], c["entries"]) for c in run.report["catalogs"]] == [("models", 414), ("embeddings", 21)]

    current = {r.model_id: r for r in ModelPrice.objects.current().filter(provider="openrouter")}
    assert current.keys() == good.keys()
    for model_id, raw_entry in good.items():
        row, prices = current[model_id], raw_prices(raw_entry)
        # Keys omitted from the catalog are stored as 0; every other key keeps its exact price.
        assert {c: getattr(row, c) for c in PRICE_COMPONENTS} == {c: prices.get(c, ZERO) for c in PRICE_COMPONENTS}
        extras = {k: v for k, v in prices.items() if k not in PRICE_COMPONENTS}
        assert {k: Decimal(v) for k, v in row.extra_prices.items()} == extras, model_id
        assert [{k: v if k in TIER_CONDITIONS else Decimal(v) for k, v in t.items()} for t in row.tiers] == (
            raw_tiers(raw_entry)
        ), model_id
        assert row.output_modalities == raw_entry["architecture"]["output_modalities"]

    assert {m for row in current.values() for m in row.output_modalities} == {"text", "image", "audio", "embeddings"}
    assert {"input_cache_write_1h", "input_audio_cache", "image_output", "audio_output"} <= {
        key for row in current.values() for key in row.extra_prices
    }
    assert sum(1 for row in current.values() if row.tiers) == sum(1 for e in good.values() if raw_tiers(e))
    for modality, key in (("image", "image_output"), ("audio", "audio_output"), ("embeddings", "prompt")):
        priced = [r for r in current.values() if modality in r.output_modalities and stored_price(r, key)]
        assert priced, f"no {modality} model stored with its {key} price"

    # One catalog given offline says nothing about the other's models: they keep their state.
    out, _ = sync("--from-file", AUG)
    assert "0 deactivated" in out and "409 unchanged" in out
    out, _ = sync("--from-file", EMB)  # told apart by its content
    assert "embeddings catalog" in out and "0 deactivated" in out and "21 unchanged" in out
    assert ModelPrice.objects.current().filter(provider="openrouter").count() == 430


# -- 3. invalid entries are reported, not applied; a suspicious catalog is refused ------------------------


@pytest.mark.django_db
def test_rejected_entries_are_reported_and_not_applied(tmp_path):
    ModelPrice.objects.filter(provider="openrouter").delete()
    ok = {"prompt": "0.000001", "completion": "0.000002"}
    sync(
        "--from-file",
        write_catalog(
            tmp_path, "first.json", [entry("t/stays", **ok), entry("t/goes-bad", **ok), entry("t/dropped", **ok)]
        ),
    )
    before = ModelPrice.objects.get(model_id="t/goes-bad")

    out, _ = sync(
        "--from-file",
        write_catalog(
            tmp_path,
            "second.json",
            [
                entry("t/stays", **ok),
                entry("t/goes-bad", prompt="-1", completion="-1"),
                entry("t/negative", prompt="-0.000001", completion="0.000002"),
                entry("t/per-million-by-mistake", prompt="3", completion="15"),
                entry("t/absurd-fee", prompt="0.000001", request="5000"),
                entry("t/not-a-number", prompt="cheap"),
            ],
        ),
    )
    reasons = {r["model_id"]: r["reason"] for r in last_run().report["rejected"]}
    assert set(reasons) == {"t/goes-bad", "t/negative", "t/per-million-by-mistake", "t/absurd-fee", "t/not-a-number"}
    assert "sentinel" in reasons["t/goes-bad"]
    assert "negative price" in reasons["t/negative"]
    assert "above the sanity limit" in reasons["t/per-million-by-mistake"]
    assert "request" in reasons["t/absurd-fee"] and "above the sanity limit" in reasons["t/absurd-fee"]
    assert "not a number" in reasons["t/not-a-number"]
    assert "5 rejected" in out and "! t/negative: prompt: negative price" in out
    # Nothing of a rejected entry is stored; a listed model with a bad new price keeps its old one.
    assert not ModelPrice.objects.filter(model_id__in=set(reasons) - {"t/goes-bad"}).exists()
    assert ModelPrice.objects.get(model_id="t/goes-bad") == before and before.is_active
    current = ModelPrice.objects.current().filter(provider="openrouter", model_id__startswith="t/")
    assert list(current.values_list("model_id", flat=True)) == ["t/goes-bad", "t/stays"]
    assert last_run().report["deactivated"] == ["t/dropped"]


@pytest.mark.django_db
def test_a_catalog_that_would_withdraw_most_models_is_refused_unless_forced(tmp_path):
    openrouter_from(DEC)
    before = snapshot()
    small = write_catalog(tmp_path, "small.json", [entry("t/only", prompt="0.000001")])
    with pytest.raises(CommandError, match=r"refusing to deactivate 347 of 347 current openrouter models.*--force"):
        sync("--from-file", small)
    assert snapshot() == before and last_run().status == "failed"
    sync("--from-file", small, "--force")
    assert list(ModelPrice.objects.current().filter(provider="openrouter").values_list("model_id", flat=True)) == [
        "t/only"
    ]


# -- 4. failures change nothing ---------------------------------------------------------------------------


def _closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/api/v1"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("connection refused", r"GET http://127\.0\.0\.1:\d+/api/v1/models\?output_modalities=all: cannot connect: "),
        ("timeout", r"GET http://127\.0\.0\.1:\d+/api/v1/models\?output_modalities=all: timed out after 0\.3 s"),
        ("http 500", r"/api/v1/models\?output_modalities=all: HTTP 500 Internal Server Error: The server had an error"),
        ("malformed json", r"/api/v1/models\?output_modalities=all: malformed JSON: "),
        ("not a catalog", r"/api/v1/models\?output_modalities=all: not an OpenRouter catalog"),
        ("embeddings 503", r"GET http://127\.0\.0\.1:\d+/api/v1/embeddings/models: HTTP 503 Service Unavailable"),
    ],
)
def test_a_failed_read_is_one_clear_line_and_changes_nothing(case, message):
    before = snapshot()
    with OpenAISimulator(openrouter_catalog=raw(JAN)) as sim:
        base_url, timeout = sim.openrouter_base_url, "5"
        if case == "connection refused":
            base_url = _closed_port_url()
        elif case == "timeout":
            sim.latency, timeout = 2.0, "0.3"
        elif case == "http 500":
            sim.fail_next("models", status=500)
        elif case == "malformed json":
            sim.enqueue(
                "models",
                SimResponse(body=b'{"data": [{"id": "x", "pricing": {', headers={"content-type": "application/json"}),
            )
        elif case == "not a catalog":
            sim.enqueue("models", SimResponse(json={"models": "elsewhere"}))
        elif case == "embeddings 503":
            sim.fail_next("embeddings/models", status=503)
        with pytest.raises(CommandError, match=message) as failure:
            sync("--base-url", base_url, "--timeout", timeout)
    assert "\n" not in str(failure.value)
    assert snapshot() == before
    run = last_run()
    assert (run.status, run.error) == ("failed", str(failure.value))


@pytest.mark.django_db(transaction=True)
def test_manage_py_exits_non_zero_on_a_network_failure(test_database_url):
    before = snapshot()
    env = {
        **os.environ,
        "DJANGO_ENV": "test",
        "DATABASE_URL": test_database_url,
        "OPENROUTER_BASE_URL": _closed_port_url(),
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "sync_model_pricing", "--timeout", "5"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("CommandError")]
    assert len(errors) == 1 and "/api/v1/models?output_modalities=all: cannot connect" in errors[0], done.stderr
    assert snapshot() == before
    assert last_run().status == "failed"


@pytest.mark.django_db
def test_the_api_key_is_sent_to_the_configured_url_only_and_never_shown(monkeypatch, settings):
    secret = "sk-or-v1-test-secret-0123456789"
    with OpenAISimulator(openrouter_catalog=raw(AUG)) as sim:
        monkeypatch.setenv("OPENROUTER_BASE_URL", sim.openrouter_base_url)
        monkeypatch.setenv("OPENROUTER_API_KEY", secret)
        load_env.cache_clear()
        try:
            settings.LLM = load_env().llm  # what config/ makes of the environment at startup
            sim.enqueue("embeddings/models", SimResponse(json=raw(EMB)))
            out, err = sync()
            sim.fail_next("models", status=401, message=f"Invalid API key {secret}")
            with pytest.raises(CommandError, match=r"HTTP 401 Unauthorized: Invalid API key \*\*\*") as failure:
                sync()
            sim.enqueue("embeddings/models", SimResponse(json=raw(EMB)))
            sync("--base-url", sim.openrouter_base_url + "/")  # the configured URL, spelled differently
            sim.enqueue("embeddings/models", SimResponse(json=raw(EMB)))
            sync("--base-url", f"http://localhost:{sim.port}/api/v1")  # another URL: no key
        finally:
            load_env.cache_clear()
        auth = [r.headers.get("authorization") for r in sim.requests]
    assert auth == [f"Bearer {secret}"] * 5 + [None, None]
    assert "0 added, 0 changed, 0 deactivated" in out  # the bundled data is this very catalog
    stored = json.dumps(list(PricingSyncRun.objects.values()), default=str)
    assert secret not in out + err + str(failure.value) + stored


@pytest.mark.django_db
def test_http_and_file_syncs_agree():
    """The same catalogs over HTTP and from files give the same report."""
    with OpenAISimulator(openrouter_catalog=raw(JAN)) as sim:
        sim.enqueue("embeddings/models", SimResponse(json=raw(EMB)))
        sync("--base-url", sim.openrouter_base_url, "--dry-run")
        assert [r.path for r in sim.requests] == ["/api/v1/models", "/api/v1/embeddings/models"]
    ModelPrice.objects.filter(provider="openrouter").delete()
    with OpenAISimulator(openrouter_catalog=raw(JAN)) as sim:
        base_url = sim.openrouter_base_url
        sim.enqueue("embeddings/models", SimResponse(json=raw(EMB)))
        sync("--base-url", base_url)
    over_http = last_run().report
    ModelPrice.objects.filter(provider="openrouter").delete()
    sync("--from-file", JAN, "--embeddings-from-file", EMB)
    from_files = last_run().report
    for key in ("added", "changed", "deactivated", "reactivated", "unchanged", "rejected"):
        assert over_http[key] == from_files[key], key
    assert [c["location"] for c in over_http["catalogs"]] == [
        f"{base_url}/models?output_modalities=all",
        f"{base_url}/embeddings/models",
    ]


# -- 5. the OpenAI table ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_provider_openai_loads_the_repo_table(tmp_path):
    table = json.loads(OPENAI_TABLE.read_text())
    as_of = datetime.fromisoformat(table["as_of"]).replace(tzinfo=UTC)
    # A stale price and a model the table no longer lists.
    ModelPrice.objects.filter(provider="openai", model_id="gpt-4o").update(prompt=Decimal("0.000005"))
    ModelPrice.objects.create(provider="openai", model_id="gpt-legacy", prompt=Decimal("0.00001"), source="old")

    out, err = sync("--provider", "openai")
    run = last_run()
    assert (run.provider, run.added, run.changed, run.deactivated, run.unchanged) == (
        "openai",
        0,
        1,
        1,
        len(table["models"]) - 1,
    )
    assert "~ gpt-4o  prompt $5/M -> $2.5/M" in out and "- gpt-legacy" in out
    assert f"as of {table['as_of']}; source: LiteLLM" in out and "openai-prices.json" in err
    row = ModelPrice.objects.current().get(provider="openai", model_id="gpt-4o")
    assert (row.prompt, row.source, row.fetched_at, row.valid_from) == (
        Decimal(table["models"]["gpt-4o"]["prompt"]),
        "bundled:openai-prices.json",
        as_of,
        run.started_at,
    )

    edited = json.loads(OPENAI_TABLE.read_text())
    edited["models"]["gpt-4o-mini"]["prompt"] = "0.0000002"
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(edited))
    out, _ = sync("--provider", "openai", "--from-file", path)
    assert "~ gpt-4o-mini  prompt $0.15/M -> $0.2/M" in out
    assert ModelPrice.objects.current().get(model_id="gpt-4o-mini").source == "file:prices.json"

    with pytest.raises(CommandError, match="expected a price table"):
        sync("--provider", "openai", "--from-file", DEC)


# -- 6. the actor and the scheduler -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_actor_syncs_both_providers_on_a_worker_and_records_the_runs(stub_broker):
    broker = stub_broker
    worker = dramatiq.Worker(broker, worker_timeout=100)
    worker.start()
    try:
        with OpenAISimulator(openrouter_catalog=raw(AUG)) as sim:
            base_url = sim.openrouter_base_url
            sim.enqueue("embeddings/models", SimResponse(json=raw(EMB)))
            sync_model_pricing.send(base_url=base_url, trigger="test")
            broker.join(sync_model_pricing.queue_name)
            worker.join()
            # A catalog that cannot be read: the run is recorded as failed, and not retried.
            sim.enqueue("models", SimResponse(body=b"<html>maintenance</html>"))
            sync_model_pricing.send(providers=["openrouter"], base_url=base_url, trigger="test")
            broker.join(sync_model_pricing.queue_name, fail_fast=False)
            worker.join()
    finally:
        worker.stop()
    ok, failed = PricingSyncRun.objects.filter(status="ok"), PricingSyncRun.objects.filter(status="failed")
    assert sorted(ok.values_list("provider", "trigger")) == [("openai", "test"), ("openrouter", "test")]
    assert ModelPrice.objects.current().filter(provider="openrouter").count() == 430
    assert ok.get(provider="openrouter").source.startswith(base_url)
    assert failed.count() == 1 and "malformed JSON" in failed.get().error
    assert sim.count("models") == 2  # no retry of a malformed catalog


def test_actor_options_and_daily_schedule():
    assert sync_model_pricing.actor_name == "llm.sync_model_pricing"
    assert sync_model_pricing.queue_name == "default"
    assert 0 < sync_model_pricing.options["time_limit"] <= 10 * 60 * 1000
    retry = sync_model_pricing.options["retry_when"]
    assert retry(0, FetchError("down", transient=True)) and not retry(
        PRICING_SYNC_RETRIES, FetchError("down", transient=True)
    )
    assert not retry(0, FetchError("malformed JSON")) and not retry(0, ValueError("bug"))

    jobs = {job.name: job for job in scheduler.get_jobs()}
    trigger = jobs["llm.sync_model_pricing"].trigger
    first = trigger.get_next_fire_time(None, datetime(2026, 1, 1, tzinfo=UTC))
    second = trigger.get_next_fire_time(first, first + timedelta(minutes=1))
    assert first == datetime(2026, 1, 1, 3, 17, tzinfo=UTC) and second - first == timedelta(days=1)


# -- 7. the admin ----------------------------------------------------------------------------------------


def queued(broker) -> list[dramatiq.Message]:
    queue = broker.queues.get(sync_model_pricing.queue_name)
    return [dramatiq.Message.decode(data) for data in list(queue.queue)] if queue else []


@pytest.mark.django_db
def test_admin_sync_now_enqueues_the_actor(admin_client, stub_broker):
    url = reverse("admin:llm_modelprice_sync_now")
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url, follow=True)
    assert response.redirect_chain == [(reverse("admin:llm_modelprice_changelist"), 302)]
    assert b"Pricing sync queued" in response.content
    [message] = queued(stub_broker)
    assert (message.actor_name, message.args, message.kwargs) == ("llm.sync_model_pricing", (), {"trigger": "admin"})


@pytest.mark.django_db
def test_only_staff_with_change_permission_may_sync(client, stub_broker):
    url = reverse("admin:llm_modelprice_sync_now")
    user = get_user_model().objects.create_user(username="visitor", email="visitor@example.com", password="x")
    client.force_login(user)
    response = client.post(url)
    assert response.status_code == 302 and "/login/" in response.url
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_modelprice"))
    assert client.post(url).status_code == 403
    page = client.get(reverse("admin:llm_modelprice_changelist"))
    assert page.status_code == 200 and b"pricing-sync-now" not in page.content
    assert queued(stub_broker) == []


@pytest.mark.django_db
def test_changelist_shows_the_last_run_of_each_provider(admin_client):
    changelist = reverse("admin:llm_modelprice_changelist")
    page = admin_client.get(changelist)
    assert page.status_code == 200 and b"No pricing sync has run yet" in page.content
    assert b"Sync now" in page.content and reverse("admin:llm_modelprice_sync_now").encode() in page.content

    sync("--provider", "openai")
    with pytest.raises(CommandError):
        sync("--base-url", _closed_port_url(), "--timeout", "5")
    page = admin_client.get(changelist)
    html = page.content.decode()
    assert page.status_code == 200
    assert "sync ok" in html and "sync failed" in html and "cannot connect" in html
    assert f"0 added, 0 changed, 0 deactivated, 0 reactivated, {last_openai().unchanged} unchanged" in html
    assert "Pricing sync of openai at" in html  # the summary
    assert "gpt-4o-mini" in html  # and the price list itself
    run = last_run()
    assert admin_client.get(reverse("admin:llm_pricingsyncrun_changelist")).status_code == 200
    detail = admin_client.get(reverse("admin:llm_pricingsyncrun_change", args=[run.pk]))
    assert detail.status_code == 200 and b"cannot connect" in detail.content
    assert admin_client.post(reverse("admin:llm_pricingsyncrun_delete", args=[run.pk])).status_code == 403


def last_openai() -> PricingSyncRun:
    return PricingSyncRun.objects.filter(provider="openai").latest("started_at")
