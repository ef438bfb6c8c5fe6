"""DynamoDB tables created from template.yaml's own definitions, so a key schema is written once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubilitics.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"

# template logical id -> the Settings field holding that table's name
TABLE_SETTINGS = {
    "RateLimitTable": "rate_limit_table",
    "RevokedTokensTable": "revoked_tokens_table",
    "StateTable": "state_table",
    "ConnectionsTable": "connections_table",
}

_CREATE_KEYS = ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "LocalSecondaryIndexes")


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, ...) as plain values; only tables are used."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_CloudFormationLoader.add_multi_constructor("!", _any_tag)


def table_definitions(template: Path = TEMPLATE) -> dict[str, dict[str, Any]]:
    document = yaml.load(template.read_text(), Loader=_CloudFormationLoader)
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in document["Resources"].items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }


def create_tables(dynamodb: Any, settings: Settings, template: Path = TEMPLATE) -> list[str]:
    """Create every table of the template that is missing; returns the table names."""
    existing = set(dynamodb.list_tables()["TableNames"])
    names = []
    for logical_id, properties in table_definitions(template).items():
        name = getattr(settings, TABLE_SETTINGS[logical_id])
        names.append(name)
        if name in existing:
            continue
        request = {key: properties[key] for key in _CREATE_KEYS if key in properties}
        dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **request)
        ttl = properties.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return names
