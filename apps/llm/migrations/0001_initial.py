import django.utils.timezone
from django.db import migrations, models


def price_field(help_text):
    # numeric(32, 24): exact for every price in the catalogs (up to 23 decimal places).
    return models.DecimalField(decimal_places=24, default=0, help_text=help_text, max_digits=32)


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="ModelPrice",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("provider", models.CharField(help_text='"openrouter", "openai"...', max_length=50)),
                ("model_id", models.CharField(help_text="The model as the provider's API names it.", max_length=255)),
                (
                    "canonical_slug",
                    models.CharField(
                        blank=True,
                        default="",
                        help_text="OpenRouter's permanent slug, which responses report.",
                        max_length=255,
                    ),
                ),
                ("name", models.CharField(blank=True, default="", max_length=255)),
                ("prompt", price_field("USD per input token.")),
                ("completion", price_field("USD per output token.")),
                ("request", price_field("USD per request.")),
                ("image", price_field("USD per input image (or image token, in newer catalogs).")),
                ("input_cache_read", price_field("USD per cached input token read.")),
                ("input_cache_write", price_field("USD per input token written to the cache.")),
                ("internal_reasoning", price_field("USD per reasoning token (0: billed as output).")),
                ("web_search", price_field("USD per web search.")),
                (
                    "extra_prices",
                    models.JSONField(
                        blank=True,
                        default=dict,
                        help_text='Other components, as decimal strings: {"input_cache_write_1h": "0.000006"}.',
                    ),
                ),
                (
                    "tiers",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text='Conditional prices: [{"min_prompt_tokens": 200000, "prompt": "..."}].',
                    ),
                ),
                ("context_length", models.PositiveIntegerField(blank=True, null=True)),
                (
                    "modality",
                    models.CharField(blank=True, default="", help_text='e.g. "text+image->text".', max_length=100),
                ),
                ("input_modalities", models.JSONField(blank=True, default=list)),
                ("output_modalities", models.JSONField(blank=True, default=list)),
                ("source", models.CharField(help_text="Where the prices came from.", max_length=255)),
                ("fetched_at", models.DateTimeField(blank=True, help_text="When the source was read.", null=True)),
                (
                    "is_active",
                    models.BooleanField(default=True, help_text="Unset when the provider stops offering the model."),
                ),
                ("valid_from", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "valid_to",
                    models.DateTimeField(blank=True, help_text="Empty while the prices are current.", null=True),
                ),
            ],
            options={
                "ordering": ["provider", "model_id", "-valid_from"],
                "indexes": [
                    models.Index(fields=["provider", "model_id", "valid_from"], name="llm_modelprice_lookup"),
                    models.Index(fields=["canonical_slug"], name="llm_modelprice_slug"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(valid_to__isnull=True),
                        fields=("provider", "model_id"),
                        name="llm_modelprice_one_current_per_model",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(valid_to__isnull=True) | models.Q(valid_to__gte=models.F("valid_from")),
                        name="llm_modelprice_valid_period",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            completion__gte=0,
                            image__gte=0,
                            input_cache_read__gte=0,
                            input_cache_write__gte=0,
                            internal_reasoning__gte=0,
                            prompt__gte=0,
                            request__gte=0,
                            web_search__gte=0,
                        ),
                        name="llm_modelprice_prices_not_negative",
                    ),
                ],
            },
        ),
    ]
