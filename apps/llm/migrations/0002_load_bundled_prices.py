from django.db import migrations

from apps.llm.pricing.store import BUNDLED_FILES, load_bundled_prices


def load_prices(apps, schema_editor):
    # The bundled OpenRouter catalog and OpenAI table (apps/llm/data), so costs can be computed
    # offline from the first run; the pricing sync replaces them with current prices.
    load_bundled_prices(apps.get_model("llm", "ModelPrice"))


def unload_prices(apps, schema_editor):
    ModelPrice = apps.get_model("llm", "ModelPrice")
    ModelPrice.objects.filter(source__in=[bundled.source for bundled in BUNDLED_FILES]).delete()


class Migration(migrations.Migration):
    dependencies = [("llm", "0001_initial")]

    operations = [migrations.RunPython(load_prices, unload_prices)]
