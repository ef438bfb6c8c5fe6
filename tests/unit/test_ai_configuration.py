"""The AI configuration document: defaults, deep merge, changed fields, validation, key masking."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kubilitics.ai.budget import ModelPrice
from kubilitics.ai.configuration import (
    changed_fields,
    deep_merge,
    default_document,
    mask_key,
    validate,
)
from kubilitics.errors import ValidationFailed


def defaults() -> dict:
    return default_document(
        "claude-sonnet-5-5", 250.0, 5_000_000, {"claude-private-1": {"input": 1.5, "output": 7}}
    )


def test_defaults_follow_the_reference_and_the_settings():
    config = validate(defaults())
    assert config.llm_configuration.model_dump() == {
        "provider": "Anthropic",
        "model": "claude-sonnet-5-5",
        "temperature": 0.3,
        "max_tokens": 2048,
        "top_p": 0.9,
    }
    assert config.investigation_settings.max_concurrent_investigations == 5
    assert config.chat_settings.enable_kubectl_commands is True
    assert config.feature_flags.performance_tuning is False
    policy = config.budget_policy()
    assert (policy.monthly_limit_usd, policy.monthly_limit_tokens) == (Decimal("250.0"), 5_000_000)
    assert policy.alert_thresholds_percent == (50, 75, 90, 100)
    assert policy.prices["claude-sonnet-5-5"] == ModelPrice(Decimal(2), Decimal(10))
    assert policy.prices["claude-private-1"] == ModelPrice(Decimal("1.5"), Decimal(7))


def test_deep_merge_merges_objects_and_replaces_lists():
    base = {"a": {"x": 1, "y": [1, 2], "m": {"k": True}}, "b": 2}
    patch = {"a": {"y": [3], "m": {"j": False}}, "c": 3}
    assert deep_merge(base, patch) == {"a": {"x": 1, "y": [3], "m": {"k": True, "j": False}}, "b": 2, "c": 3}
    assert base["a"]["y"] == [1, 2]  # inputs are not changed


def test_changed_fields_names_only_leaves_whose_value_changed():
    before = validate(defaults()).model_dump(mode="json")
    protected = ["kube-system", "kube-node-lease", "kube-public", "prod-pii"]
    patch = {
        "llm_configuration": {"temperature": 0.2, "max_tokens": 2048},
        "safety_policy": {"protected_namespaces": protected, "require_human_approval": {"delete_pod": False}},
    }
    after = validate(deep_merge(before, patch)).model_dump(mode="json")
    assert changed_fields(before, after) == [
        "llm_configuration.temperature",
        "safety_policy.protected_namespaces",
        "safety_policy.require_human_approval.delete_pod",
    ]
    grown = deep_merge(after, {"budget": {"model_prices": {"claude-new-1": {"input": 1, "output": 2}}}})
    assert changed_fields(after, validate(grown).model_dump(mode="json")) == [
        "budget.model_prices.claude-new-1"
    ]


@pytest.mark.parametrize(
    ("patch", "field", "reason"),
    [
        ({"llm_configuration": {"temperature": 1.5}}, "llm_configuration.temperature", "less_than_equal"),
        ({"llm_configuration": {"temperature": "0.2"}}, "llm_configuration.temperature", "float_type"),
        ({"llm_configuration": {"max_tokens": 0}}, "llm_configuration.max_tokens", "greater_than_equal"),
        ({"llm_configuration": {"provider": "OpenAI"}}, "llm_configuration.provider", "literal_error"),
        ({"llm_configuration": {"colour": "blue"}}, "llm_configuration.colour", "extra_forbidden"),
        ({"safety_policy": {"autonomy_level": "4_yolo"}}, "safety_policy.autonomy_level", "literal_error"),
        (
            {"safety_policy": {"max_resource_deletion_count": -1}},
            "safety_policy.max_resource_deletion_count",
            "greater_than_equal",
        ),
        (
            {"investigation_settings": {"max_concurrent_investigations": True}},
            "investigation_settings.max_concurrent_investigations",
            "int_type",
        ),
        ({"feature_flags": {"cost_optimization": "yes"}}, "feature_flags.cost_optimization", "bool_type"),
        (
            {"budget": {"alert_thresholds_percent": [50, 150]}},
            "budget.alert_thresholds_percent.1",
            "less_than_equal",
        ),
        ({"budget": {"monthly_limit_usd": -5}}, "budget.monthly_limit_usd", "greater_than_equal"),
        ({"chat_settings": 3}, "chat_settings", "model_type"),
        ({"webhooks": {}}, "webhooks", "extra_forbidden"),
    ],
)
def test_validation_names_the_field(patch, field, reason):
    with pytest.raises(ValidationFailed) as refused:
        validate(deep_merge(defaults(), patch))
    assert refused.value.status == 400
    assert (refused.value.details["field"], refused.value.details["reason"]) == (field, reason)
    assert field in refused.value.message


def test_integral_numbers_count_as_integers_as_in_json_schema():
    # /openapi.json says `integer`, which JSON Schema reads as any integral number (5.0, 1e16): make fuzz
    patch = {"budget": {"monthly_limit_tokens": 1e16, "alert_thresholds_percent": [50.0]}}
    config = validate(deep_merge(defaults(), patch))
    assert config.budget.monthly_limit_tokens == 10**16 and config.budget.alert_thresholds_percent == [50]
    with pytest.raises(ValidationFailed, match=r"budget\.monthly_limit_tokens"):
        validate(deep_merge(defaults(), {"budget": {"monthly_limit_tokens": 1.5}}))


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz-abcd", "sk-ant-***abcd"),
        ("proxy-key-1234567890wxyz", "pro***wxyz"),
        ("short", "***"),
        (None, None),
    ],
)
def test_only_a_masked_prefix_of_the_key_is_shown(key, masked):
    assert mask_key(key) == masked
