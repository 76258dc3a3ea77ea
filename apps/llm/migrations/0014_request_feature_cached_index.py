from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY: the request log keeps being written while its tens of millions of
    # rows are indexed; it cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("llm", "0013_usage_by_tag"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="llmrequest",
            index=models.Index(
                condition=models.Q(("cached", True)),
                fields=["feature", "-created_at"],
                name="llm_request_feature_cached",
            ),
        ),
    ]
