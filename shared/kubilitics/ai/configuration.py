"""The AI configuration (reference section 9): model, safety policy, investigations, chat, features,
and the budget (an addition: limits, alert thresholds and prices per model).

What is stored is only what admins changed (the overrides); the effective configuration is the
defaults (from settings) deep-merged with the overrides and validated here. Unknown fields, wrong
types and out-of-range values are refused with the dotted name of the field.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubilitics.ai.budget import DEFAULT_ALERT_THRESHOLDS, DEFAULT_PRICES, BudgetPolicy, ModelPrice
from kubilitics.ai.safety import SafetyPolicy
from kubilitics.errors import ValidationFailed

PROVIDER = "Anthropic"
# PUT accepts these inside llm_configuration besides the model fields: the key (write-only, stored in
# Secrets Manager) and the masked prefix GET shows (ignored, so a GET body can be PUT back).
WRITE_ONLY_FIELDS = ("api_key",)
READ_ONLY_FIELDS = ("api_key_prefix",)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LlmConfiguration(_Section):
    provider: Literal["Anthropic"] = "Anthropic"
    model: str = Field(
        default="claude-sonnet-5-5", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@\-]+$"
    )
    # Kept for the reference's sake: API version 2026-10-21 rejects sampling parameters, so they
    # are validated and stored but not sent (see ai.providers.anthropic).
    temperature: float = Field(default=0.3, ge=0, le=1)
    max_tokens: int = Field(default=2048, ge=1, le=128_000)
    top_p: float = Field(default=0.9, ge=0, le=1)


class InvestigationSettings(_Section):
    max_concurrent_investigations: int = Field(default=5, ge=1, le=100)
    investigation_timeout_minutes: int = Field(default=30, ge=1, le=1440)
    auto_remediation_enabled: bool = False
    save_investigation_history: bool = True


class ChatSettings(_Section):
    context_window_messages: int = Field(default=20, ge=1, le=500)
    enable_code_execution: bool = False
    enable_kubectl_commands: bool = True


class FeatureFlags(_Section):
    predictive_analytics: bool = True
    cost_optimization: bool = True
    security_recommendations: bool = True
    performance_tuning: bool = False


class PriceConfig(_Section):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class BudgetSettings(_Section):
    monthly_limit_usd: float = Field(default=100.0, ge=0)
    monthly_limit_tokens: int = Field(default=20_000_000, ge=0)
    alert_thresholds_percent: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: list(DEFAULT_ALERT_THRESHOLDS)
    )
    model_prices: dict[str, PriceConfig] = Field(default_factory=dict)


class AiConfig(_Section):
    llm_configuration: LlmConfiguration = Field(default_factory=LlmConfiguration)
    safety_policy: SafetyPolicy = Field(default_factory=SafetyPolicy)
    investigation_settings: InvestigationSettings = Field(default_factory=InvestigationSettings)
    chat_settings: ChatSettings = Field(default_factory=ChatSettings)
    feature_flags: FeatureFlags = Field(default_factory=FeatureFlags)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)

    def budget_policy(self) -> BudgetPolicy:
        b = self.budget
        return BudgetPolicy(
            monthly_limit_usd=Decimal(str(b.monthly_limit_usd)),
            monthly_limit_tokens=b.monthly_limit_tokens,
            alert_thresholds_percent=tuple(sorted(set(b.alert_thresholds_percent))),
            prices={
                model: ModelPrice(Decimal(str(p.input)), Decimal(str(p.output)))
                for model, p in b.model_prices.items()
            },
        )


def default_document(
    model: str, monthly_limit_usd: float, monthly_limit_tokens: int, prices: Mapping[str, Mapping[str, float]]
) -> dict[str, Any]:
    """The defaults as a plain document (settings decide the model, limits and extra prices)."""
    document = AiConfig().model_dump(mode="json")
    document["llm_configuration"]["model"] = model
    document["budget"]["monthly_limit_usd"] = monthly_limit_usd
    document["budget"]["monthly_limit_tokens"] = monthly_limit_tokens
    table = {name: {"input": float(p.input), "output": float(p.output)} for name, p in DEFAULT_PRICES.items()}
    for name, price in prices.items():
        table[name] = {"input": float(price["input"]), "output": float(price["output"])}
    document["budget"]["model_prices"] = table
    return document


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` over `base`: objects merge key by key, anything else (lists too) replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def changed_fields(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves whose value differs (lists compare whole)."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        paths: list[str] = []
        for key in [*before, *(k for k in after if k not in before)]:
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in before or key not in after:
                paths.append(path)
            else:
                paths.extend(changed_fields(before[key], after[key], path))
        return paths
    return [] if before == after else [prefix]


def json_integers(value: Any) -> Any:
    """Integral numbers as ints: JSON Schema (so /openapi.json) counts 5.0 and 1e16 as integers, the
    strict models only ints; a fraction, a string or a boolean is still refused where an int belongs."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: json_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_integers(item) for item in value]
    return value


def validate(document: Mapping[str, Any]) -> AiConfig:
    """The effective configuration, or 400 `validation_failed` naming the first bad field."""
    try:
        return AiConfig.model_validate(json_integers(document))
    except ValidationError as exc:
        raise config_error(exc) from None


def config_error(exc: ValidationError) -> ValidationFailed:
    violations = [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "body",
            "reason": error["type"],
            "message": error["msg"].removeprefix("Value error, "),
        }
        for error in exc.errors()
    ]
    first = violations[0]
    if first["reason"] == "extra_forbidden":
        message = f"Unknown field {first['field']}"
    else:
        message = f"Invalid value for {first['field']}: {first['message']}"
    return field_error(first["field"], message, first["reason"], violations)


def field_error(
    field: str, message: str, reason: str = "invalid", violations: list[dict[str, Any]] | None = None
) -> ValidationFailed:
    return ValidationFailed(
        message,
        details={
            "field": field,
            "reason": reason,
            "violations": violations or [{"field": field, "reason": reason, "message": message}],
        },
    )


def mask_key(key: str | None) -> str | None:
    """`sk-ant-***abcd`: enough to tell keys apart, never enough to use one."""
    if not key:
        return None
    if len(key) < 12:
        return "***"
    prefix = "sk-ant-" if key.startswith("sk-ant-") else key[:3]
    return f"{prefix}***{key[-4:]}"
