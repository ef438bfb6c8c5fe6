"""The local stack the functions run against: the template's resources created in a moto server, as
CloudFormation would create them, and the values their Refs resolve to.

DynamoDB tables from their Properties; JwtSecret with a generated 64-character key, AiSecret empty (no
value: "AI not configured"); the kubeconfig secret holding the test cluster's kubeconfig, passed as
the KubeconfigSecretArn parameter as a deployer would; the Lambda functions (so that async invokes are
accepted; moto does not run them); the investigation state machine from its definition file.
The WebSocket stage's management endpoint resolves to moto's, which serves it without the stage path.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests

from tests.lambda_runtime import template

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
CREDENTIALS = {"aws_access_key_id": "lambda-test", "aws_secret_access_key": "lambda-test"}


@dataclass
class LocalStack:
    endpoint: str
    name: str
    values: dict[str, Any]  # Ref / GetAtt values by logical id, parameter or pseudo parameter
    conditions: dict[str, bool]
    jwt_secret: str

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, **CREDENTIALS)

    def environment(self, variables: dict[str, Any]) -> dict[str, str]:
        """A function's template variables resolved; the WebSocket management endpoint is moto's."""
        resolved = {}
        for name, value in variables.items():
            text = template.resolve(value, self.values, self.conditions)
            if text is None:  # AWS::NoValue
                continue
            if name == "KUBILITICS_WEBSOCKET_ENDPOINT":
                text = self.endpoint
            resolved[name] = str(text)
        return resolved


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _conditions(document: dict[str, Any], values: dict[str, Any]) -> dict[str, bool]:
    def evaluate(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((name, arg),) = node.items()
            if name == "Fn::Not":
                return not evaluate(arg[0])
            if name == "Fn::Equals":
                return evaluate(arg[0]) == evaluate(arg[1])
            if name == "Fn::And":
                return all(evaluate(a) for a in arg)
            if name == "Fn::Or":
                return any(evaluate(a) for a in arg)
            if name == "Ref":
                return values[arg]
        return node

    return {name: bool(evaluate(node)) for name, node in document.get("Conditions", {}).items()}


def _function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


@contextlib.contextmanager
def running(document: dict[str, Any], build_dir: Path, kubeconfig: Path, name: str) -> Iterator[LocalStack]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        # Lambda invokes are accepted and recorded, not run (no Docker here).
        requests.post(f"{endpoint}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10)
        yield _create(document, build_dir, kubeconfig, name, endpoint)
    finally:
        server.stop()


def _create(
    document: dict[str, Any], build_dir: Path, kubeconfig: Path, name: str, endpoint: str
) -> LocalStack:
    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)

    values: dict[str, Any] = {
        "AWS::StackName": name,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NoValue": None,
        **template.parameter_defaults(document),
    }
    secrets, dynamodb, lambda_ = client("secretsmanager"), client("dynamodb"), client("lambda")
    values["KubeconfigSecretArn"] = secrets.create_secret(
        Name=f"{name}-kubeconfig", SecretString=kubeconfig.read_text()
    )["ARN"]
    role = client("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    resources = document["Resources"]
    jwt_secret = ""
    machines = []
    for logical_id, resource in resources.items():
        kind, props = resource["Type"], resource.get("Properties", {})
        physical = f"{name}-{logical_id}"
        if kind == "AWS::DynamoDB::Table":
            keys = ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "LocalSecondaryIndexes")
            request = {key: props[key] for key in keys if key in props}
            dynamodb.create_table(TableName=physical, BillingMode="PAY_PER_REQUEST", **request)
            if "TimeToLiveSpecification" in props:
                dynamodb.update_time_to_live(
                    TableName=physical, TimeToLiveSpecification=props["TimeToLiveSpecification"]
                )
            values[logical_id] = physical
            values[f"{logical_id}.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{physical}"
        elif kind == "AWS::SecretsManager::Secret":
            request = {"Name": physical, "Description": logical_id}
            if "GenerateSecretString" in props:
                generate = props["GenerateSecretString"]
                request["SecretString"] = secrets.get_random_password(
                    PasswordLength=generate.get("PasswordLength", 32),
                    ExcludePunctuation=generate.get("ExcludePunctuation", False),
                )["RandomPassword"]
                if logical_id == "JwtSecret":
                    jwt_secret = request["SecretString"]
            values[logical_id] = secrets.create_secret(**request)["ARN"]
        elif kind == "AWS::Serverless::Function":
            lambda_.create_function(
                FunctionName=physical,
                Runtime="python3.11",
                Role=role,
                Handler="app.handler",
                Code={"ZipFile": _function_zip()},
            )
            values[logical_id] = physical
            values[f"{logical_id}.Arn"] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}"
        elif kind == "AWS::Serverless::StateMachine":
            machines.append((logical_id, physical, props))
        else:  # APIs, routes, log groups, layers...: a placeholder id is all an env variable could use
            values[logical_id] = physical.lower().replace("-", "")[:10]
            values[f"{logical_id}.Arn"] = f"arn:aws:local:{REGION}:{ACCOUNT}:{physical}"
    conditions = _conditions(document, values)
    sfn = client("stepfunctions")
    for logical_id, physical, props in machines:  # after the functions their definitions name
        definition = (build_dir / props["DefinitionUri"]).resolve().read_text()
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace(f"${{{key}}}", str(template.resolve(value, values, conditions)))
        json.loads(definition)  # every substitution made
        values[logical_id] = sfn.create_state_machine(name=physical, definition=definition, roleArn=role)[
            "stateMachineArn"
        ]
    return LocalStack(endpoint, name, values, conditions, jwt_secret)
