"""The provider registry: built-in providers as data, and a new one added without touching the client."""

from __future__ import annotations

import pytest

from apps.llm.accounting.records import CallRecord
from apps.llm.conf import ProviderSettings, llm_settings
from apps.llm.transport.providers import (
    COMPATIBLE,
    OPENAI,
    OPENROUTER,
    ProviderSpec,
    configured_providers,
    provider_specs,
    register_provider,
    unregister_provider,
)

HELLO = [{"role": "user", "content": "Hello"}]


class Collect:
    def __init__(self) -> None:
        self.calls: list[CallRecord] = []

    def record(self, call: CallRecord) -> None:
        self.calls.append(call)


@pytest.fixture
def groq():
    """An OpenAI-compatible provider registered the way a project would add one."""
    spec = register_provider(
        ProviderSpec(
            "groq",
            default_base_url="https://api.groq.com/openai/v1",
            default_headers={"X-Client": "llm-platform-tests"},
            extra_body={"service_tier": "on_demand"},
        )
    )
    yield spec
    unregister_provider("groq")


def test_built_in_providers_name_models_their_way():
    specs = provider_specs()
    assert list(specs)[:3] == [OPENROUTER, OPENAI, COMPATIBLE]  # registration order is fallback order
    openai, openrouter, compatible = specs[OPENAI], specs[OPENROUTER], specs[COMPATIBLE]
    assert openai.model_name("openai/gpt-4o-mini") == "gpt-4o-mini" == openai.model_name("gpt-4o-mini")
    assert openai.serves("gpt-4o") and openai.serves("openai/gpt-4o") and not openai.serves("anthropic/claude")
    assert openrouter.model_name("gpt-4o-mini") == "openai/gpt-4o-mini"
    assert openrouter.model_name("anthropic/claude-sonnet-4") == "anthropic/claude-sonnet-4"
    assert compatible.model_name("llama3.1:8b") == "llama3.1:8b" and compatible.serves("anything/at-all")


def test_which_providers_a_configuration_makes_usable():
    configured = configured_providers(
        {
            OPENROUTER: ProviderSettings(api_key=None),  # no key: not usable
            OPENAI: ProviderSettings(api_key="sk-test-openai"),  # the public URL by default
            COMPATIBLE: ProviderSettings(base_url="http://127.0.0.1:11434/v1"),  # no key needed
        }
    )
    assert list(configured) == [OPENAI, COMPATIBLE]
    assert configured[OPENAI].base_url == "https://api.openai.com/v1"
    assert configured_providers({COMPATIBLE: ProviderSettings(api_key="sk-x")}) == {}  # nowhere to send


@pytest.mark.django_db
def test_a_registered_provider_serves_calls_with_no_change_to_the_client(groq, sim, make_client):
    recorder = Collect()
    client = make_client(
        provider_settings={"groq": ProviderSettings(api_key="sk-groq-test-key-123456", base_url=sim.base_url)},
        recorders=[recorder],
    )
    assert client.primary_provider == "groq" and client.get_client_info()["fallback_order"] == ["groq"]

    response = client.chat_completion(HELLO, model="llama-3.3-70b-versatile")

    assert response.provider == "groq" and response.content
    (request,) = sim.requests
    assert request.json["model"] == "llama-3.3-70b-versatile"
    assert request.json["service_tier"] == "on_demand"  # the spec's extra body
    assert request.headers["x-client"] == "llm-platform-tests"
    assert request.headers["authorization"] == "Bearer sk-groq-test-key-123456"
    (call,) = recorder.calls
    assert call.provider == "groq" and call.key_fingerprint == client.providers["groq"].key_fingerprint


@pytest.mark.django_db
def test_a_free_provider_is_priced_at_zero(sim, make_client):
    register_provider(ProviderSpec("in-house", free=True, needs_key=False))
    try:
        client = make_client(provider_settings={"in-house": ProviderSettings(base_url=sim.base_url)})
        assert client.chat_completion(HELLO, model="our-own-model").cost == 0
    finally:
        unregister_provider("in-house")


def test_llm_settings_read_the_providers_of_settings_llm(settings):
    settings.LLM = {"PROVIDERS": {"openai": {"API_KEY": "sk-from-settings", "BASE_URL": ""}}, "TEXT_LIMIT": 10}
    config = llm_settings()
    assert config.provider(OPENAI) == ProviderSettings(api_key="sk-from-settings", base_url=None)
    assert config.provider(OPENROUTER) == ProviderSettings()
    assert (config.text_limit, config.request_log, config.retention_days) == (10, "async", 90)  # defaults
    assert "sk-from-settings" not in repr(config)
