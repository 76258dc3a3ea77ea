import dramatiq_postgres
from django.db import migrations, models
from pgvector.django import VectorExtension


def create_broker_schema(apps, schema_editor):
    # The Postgres broker's queue tables (schema "dramatiq"). Harmless when REDIS_URL
    # selects Redis, and lets a deployment switch brokers without a manual step.
    with schema_editor.connection.cursor() as cursor:
        dramatiq_postgres.init(cursor)


def drop_broker_schema(apps, schema_editor):
    schema_editor.execute("DROP SCHEMA IF EXISTS dramatiq CASCADE")


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        VectorExtension(),
        migrations.RunPython(create_broker_schema, drop_broker_schema),
        migrations.CreateModel(
            name="Heartbeat",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                ("last_seen_at", models.DateTimeField()),
            ],
            options={"ordering": ["name"]},
        ),
    ]
