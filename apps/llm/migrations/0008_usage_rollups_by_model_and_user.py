"""Coarser rollups (per model and feature; per user) with their lists of calls, backfilled.

The sums come from LLMUsageDaily, the lists (costliest calls, latest failures) from the
request log, one pass over it per list. The backfill is frozen SQL, as the tables were at this
migration (18 latency buckets, 10 calls per list), not a call into apps.llm.accounting.rollups, whose code
follows the models of later migrations.
"""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

SUMS = (
    "requests",
    "successes",
    "failures",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost",
    "provider_cost",
    "saved_cost",
    "latency_ms_sum",
)
BUCKETS = 18
KEPT_CALLS = 10
LOG_COLUMNS = {
    "provider": "provider",
    "model": "coalesce(nullif(model, ''), model_requested)",
    "user_id": "user_id",
    "feature": "feature",
}
# (values column, ids column, which calls, their value)
CALL_LISTS = [
    ("top_costs", "top_ids", "cost IS NOT NULL", "cost"),
    ("failure_times", "failure_ids", "status = 'error'", "created_at"),
]


def backfill(table: str, *dims: str) -> list[str]:
    key = ", ".join(dims)
    sums = ", ".join(f"sum({c})" for c in SUMS)
    histogram = ", ".join(f"coalesce(sum(latency_histogram[{i}]), 0)" for i in range(1, BUCKETS + 1))
    lists = [c for values, ids, _, _ in CALL_LISTS for c in (values, ids)]
    empty = ", '{}'" * len(lists)
    statements = [
        f"INSERT INTO {table} (date, {key}, {', '.join(SUMS)}, latency_histogram, {', '.join(lists)}) "
        f"SELECT date, {key}, {sums}, ARRAY[{histogram}]::bigint[]{empty} "
        f"FROM llm_llmusagedaily GROUP BY date, {key}"
    ]
    day = "(created_at AT TIME ZONE 'UTC')::date"
    log_key = ", ".join(LOG_COLUMNS[d] for d in dims)
    named = ", ".join(f"{LOG_COLUMNS[d]} AS {d}" for d in dims)
    match = " AND ".join(f"r.{d} IS NOT DISTINCT FROM t.{d}" for d in dims)
    for values, ids, condition, value in CALL_LISTS:
        statements.append(
            f"UPDATE {table} r SET {values} = t.vs, {ids} = t.ids "
            f"FROM (SELECT day, {key}, array_agg(v ORDER BY v DESC, id) AS vs, "
            f"             array_agg(id ORDER BY v DESC, id) AS ids "
            f"      FROM (SELECT {day} AS day, {named}, {value} AS v, id, "
            f"                   row_number() OVER (PARTITION BY {day}, {log_key} ORDER BY {value} DESC, id) AS rank "
            f"            FROM llm_llmrequest WHERE {condition}) ranked "
            f"      WHERE rank <= {KEPT_CALLS} GROUP BY day, {key}) t "
            f"WHERE r.date = t.day AND {match}"
        )
    return statements


class Migration(migrations.Migration):
    dependencies = [
        ("llm", "0007_request_id_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="LLMUsageByModel",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("date", models.DateField()),
                ("requests", models.BigIntegerField(default=0)),
                ("successes", models.BigIntegerField(default=0)),
                ("failures", models.BigIntegerField(default=0)),
                ("cache_hits", models.BigIntegerField(default=0)),
                ("prompt_tokens", models.BigIntegerField(default=0)),
                ("completion_tokens", models.BigIntegerField(default=0)),
                ("cached_tokens", models.BigIntegerField(default=0)),
                ("reasoning_tokens", models.BigIntegerField(default=0)),
                ("total_tokens", models.BigIntegerField(default=0)),
                ("cost", models.DecimalField(decimal_places=24, default=0, max_digits=32)),
                ("provider_cost", models.DecimalField(decimal_places=24, default=0, max_digits=32)),
                ("saved_cost", models.DecimalField(decimal_places=24, default=0, max_digits=32)),
                ("latency_ms_sum", models.BigIntegerField(default=0)),
                (
                    "latency_histogram",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.BigIntegerField(),
                        blank=True,
                        default=list,
                        help_text="Requests per latency bucket (LATENCY_BUCKETS_MS).",
                        size=None,
                    ),
                ),
                (
                    "top_costs",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.DecimalField(decimal_places=24, max_digits=32),
                        blank=True,
                        default=list,
                        help_text="Costs of the 10 costliest priced calls, highest first.",
                        size=None,
                    ),
                ),
                (
                    "top_ids",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.UUIDField(),
                        blank=True,
                        default=list,
                        help_text="Their request-log ids, in the same order.",
                        size=None,
                    ),
                ),
                (
                    "failure_times",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.DateTimeField(),
                        blank=True,
                        default=list,
                        help_text="When the 10 latest failed calls were made, latest first.",
                        size=None,
                    ),
                ),
                (
                    "failure_ids",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.UUIDField(),
                        blank=True,
                        default=list,
                        help_text="Their request-log ids, in the same order.",
                        size=None,
                    ),
                ),
                ("provider", models.CharField(max_length=50)),
                ("model", models.CharField(max_length=255)),
                ("feature", models.CharField(blank=True, default="", max_length=100)),
            ],
            options={
                "verbose_name": "daily LLM usage by model",
                "verbose_name_plural": "daily LLM usage by model",
            },
        ),
        migrations.CreateModel(
            name="LLMUsageByUser",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("date", models.DateField()),
                ("requests", models.BigIntegerField(default=0)),
                ("successes", models.BigIntegerField(default=0)),
                ("failures", models.BigIntegerField(default=0)),
                ("cache_hits", models.BigIntegerField(default=0)),
                ("prompt_tokens", models.BigIntegerField(default=0)),
                ("completion_tokens", models.BigIntegerField(default=0)),
                ("cached_tokens", models.BigIntegerField(default=0)),
                ("reasoning_tokens", models.BigIntegerField(default=0)),
                ("total_tokens", models.BigIntegerField(default=0)),
                ("cost", models.DecimalField(decimal_places=24, default=0, max_digits=32)),
                ("provider_cost", models.DecimalField(decimal_places=24, default=0, max_digits=32)),
                ("saved_cost", models.DecimalField(decimal_places=24, default=0, max_digits=32)),
                ("latency_ms_sum", models.BigIntegerField(default=0)),
                (
                    "latency_histogram",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.BigIntegerField(),
                        blank=True,
                        default=list,
                        help_text="Requests per latency bucket (LATENCY_BUCKETS_MS).",
                        size=None,
                    ),
                ),
                (
                    "top_costs",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.DecimalField(decimal_places=24, max_digits=32),
                        blank=True,
                        default=list,
                        help_text="Costs of the 10 costliest priced calls, highest first.",
                        size=None,
                    ),
                ),
                (
                    "top_ids",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.UUIDField(),
                        blank=True,
                        default=list,
                        help_text="Their request-log ids, in the same order.",
                        size=None,
                    ),
                ),
                (
                    "failure_times",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.DateTimeField(),
                        blank=True,
                        default=list,
                        help_text="When the 10 latest failed calls were made, latest first.",
                        size=None,
                    ),
                ),
                (
                    "failure_ids",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.UUIDField(),
                        blank=True,
                        default=list,
                        help_text="Their request-log ids, in the same order.",
                        size=None,
                    ),
                ),
            ],
            options={
                "verbose_name": "daily LLM usage by user",
                "verbose_name_plural": "daily LLM usage by user",
            },
        ),
        migrations.RemoveIndex(
            model_name="llmusagedaily",
            name="llm_usage_daily_date",
        ),
        migrations.AddIndex(
            model_name="llmusagedaily",
            index=models.Index(fields=["user", "date"], name="llm_usage_daily_user"),
        ),
        migrations.AddIndex(
            model_name="llmusagedaily",
            index=models.Index(fields=["model", "date"], name="llm_usage_daily_model"),
        ),
        migrations.AddIndex(
            model_name="llmusagedaily",
            index=models.Index(fields=["feature", "date"], name="llm_usage_daily_feature"),
        ),
        migrations.AddConstraint(
            model_name="llmusagebymodel",
            constraint=models.UniqueConstraint(
                fields=("date", "provider", "model", "feature"), name="llm_usage_by_model_key"
            ),
        ),
        migrations.AddField(
            model_name="llmusagebyuser",
            name="user",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddConstraint(
            model_name="llmusagebyuser",
            constraint=models.UniqueConstraint(
                fields=("date", "user"), name="llm_usage_by_user_key", nulls_distinct=False
            ),
        ),
        migrations.RunSQL(
            backfill("llm_llmusagebymodel", "provider", "model", "feature"), reverse_sql=migrations.RunSQL.noop
        ),
        migrations.RunSQL(backfill("llm_llmusagebyuser", "user_id"), reverse_sql=migrations.RunSQL.noop),
    ]
