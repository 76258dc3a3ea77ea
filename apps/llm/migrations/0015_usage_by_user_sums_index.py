from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY: the request-log writer keeps upserting the rollup meanwhile.
    atomic = False

    dependencies = [
        ("llm", "0014_request_feature_cached_index"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="llmusagebyuser",
            index=models.Index(
                fields=["date"],
                include=[
                    "user",
                    "requests",
                    "failures",
                    "refusals",
                    "cache_hits",
                    "total_tokens",
                    "cost",
                    "saved_cost",
                ],
                name="llm_usage_by_user_sums",
            ),
        ),
    ]
