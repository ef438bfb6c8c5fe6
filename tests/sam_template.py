"""template.yaml as CloudFormation receives it: translated by the SAM translator (the same library
`sam deploy` uses), its intrinsics resolved to concrete values for a fixed account, region and stack,
and IAM's matching rules to ask whether a function's role allows a call.

Used by tests/unit/test_template.py (the template checked as a whole), tests/iam_recorder.py (every
AWS call a function makes in the tests, checked against its role) and tests/iam_check.py.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Another template in its place: to see a check fail on a deliberately broken copy.
TEMPLATE = Path(os.environ.get("KUBILITICS_CHECK_TEMPLATE") or REPO / "template.yaml")

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
STACK = "kubilitics"
# Given, so that the policies behind `HasKubeconfigSecret` are expanded and checked too.
KUBECONFIG_SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:kubeconfig-AbCdEf"
PARAMETERS = {"KubeconfigSecretArn": KUBECONFIG_SECRET_ARN}
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": PARTITION,
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/00000000",
}
# The translator needs ARNs for the managed policies it attaches (normally looked up with IAM).
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
}
_LOCAL_URIS = ("CodeUri", "ContentUri", "DefinitionUri")
NO_VALUE = object()


class Unresolvable(ValueError):
    """A Ref, GetAtt or Sub that names nothing (or an attribute this model does not know)."""


@cache
def _parsed(text: str) -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse(text))


def source_template() -> dict[str, Any]:
    """template.yaml as written (short-form tags become their long forms); a copy."""
    return copy.deepcopy(_parsed(TEMPLATE.read_text()))


@cache
def _translated(text: str) -> dict[str, Any]:
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = copy.deepcopy(_parsed(text))
    # Local folders are what `sam build`/`sam deploy` upload; the translator accepts only S3 URIs,
    # so they become s3://local/<folder> (the key keeps the folder: functions/<name>/).
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        for key in _LOCAL_URIS:
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://local/{properties[key]}"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    try:
        out = translator.translate(
            template,
            parameter_values={**PSEUDO, **PARAMETERS},
            get_managed_policy_map=lambda: MANAGED_POLICIES,
        )
    except InvalidDocumentException as exc:
        raise AssertionError("SAM translator: " + "; ".join(str(c) for c in exc.causes)) from exc
    return dict(out)


def translated() -> dict[str, Any]:
    """The CloudFormation template `sam deploy` would submit (a copy: callers may change it)."""
    return copy.deepcopy(_translated(TEMPLATE.read_text()))


# -- intrinsics --------------------------------------------------------------------------------------


# What Ref and GetAtt return per resource type. A type or attribute missing here is reported as
# unresolvable: add it (with the value CloudFormation documents) when the template starts using it.
def _ref(logical: str, rtype: str, props: Mapping[str, Any]) -> str:
    name = f"{STACK}-{logical}"
    arn = f"arn:{PARTITION}"
    values = {
        "AWS::DynamoDB::Table": name,
        "AWS::SecretsManager::Secret": f"{arn}:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf",
        "AWS::Lambda::Function": name,
        "AWS::Lambda::LayerVersion": f"{arn}:lambda:{REGION}:{ACCOUNT}:layer:{name}:1",
        "AWS::Lambda::Permission": f"{logical}-permission",
        "AWS::Lambda::EventInvokeConfig": f"{logical}-config",
        "AWS::StepFunctions::StateMachine": f"{arn}:states:{REGION}:{ACCOUNT}:stateMachine:{name}",
        "AWS::ApiGatewayV2::Api": logical.lower()[:10],
        "AWS::ApiGatewayV2::Stage": str(props.get("StageName", "")),
        "AWS::ApiGatewayV2::Integration": f"{logical.lower()[:7]}",
        "AWS::ApiGatewayV2::Route": f"{logical.lower()[:7]}",
        "AWS::Logs::LogGroup": f"/aws/{name}",
        "AWS::IAM::Role": name,
        "AWS::Events::Rule": name,
    }
    if rtype not in values:
        raise Unresolvable(f"Ref {logical}: no model of {rtype} in tests/sam_template.py")
    return values[rtype]


def _get_att(logical: str, attribute: str, rtype: str, props: Mapping[str, Any]) -> str:
    ref = _ref(logical, rtype, props)
    arn = f"arn:{PARTITION}"
    values: dict[tuple[str, str], str] = {
        ("AWS::DynamoDB::Table", "Arn"): f"{arn}:dynamodb:{REGION}:{ACCOUNT}:table/{ref}",
        ("AWS::Lambda::Function", "Arn"): f"{arn}:lambda:{REGION}:{ACCOUNT}:function:{ref}",
        ("AWS::StepFunctions::StateMachine", "Arn"): ref,
        ("AWS::StepFunctions::StateMachine", "Name"): ref.rsplit(":", 1)[-1],
        ("AWS::SecretsManager::Secret", "Id"): ref,
        ("AWS::Logs::LogGroup", "Arn"): f"{arn}:logs:{REGION}:{ACCOUNT}:log-group:{ref}:*",
        ("AWS::IAM::Role", "Arn"): f"{arn}:iam::{ACCOUNT}:role/{ref}",
        ("AWS::Events::Rule", "Arn"): f"{arn}:events:{REGION}:{ACCOUNT}:rule/{ref}",
        ("AWS::ApiGatewayV2::Api", "ApiId"): ref,
        ("AWS::ApiGatewayV2::Api", "ApiEndpoint"): f"https://{ref}.execute-api.{REGION}.amazonaws.com",
    }
    if (rtype, attribute) not in values:
        raise Unresolvable(f"GetAtt {logical}.{attribute}: no model of {rtype}.{attribute}")
    return values[(rtype, attribute)]


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Resolves intrinsics of a translated template. `physical` overrides what a Ref returns
    (tests that build real resources in moto map logical ids to them)."""

    def __init__(self, cfn: Mapping[str, Any], physical: Mapping[str, str] | None = None):
        self.cfn = cfn
        self.resources: Mapping[str, Any] = cfn.get("Resources", {})
        self.physical = dict(physical or {})
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in (cfn.get("Parameters") or {}).items()
        }
        self.parameters.update(PARAMETERS)

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.physical:
            return self.physical[name]
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            resource = self.resources[name]
            return _ref(name, resource["Type"], resource.get("Properties") or {})
        raise Unresolvable(f"Ref {name}: no such parameter or resource")

    def get_att(self, name: str, attribute: str) -> str:
        if name not in self.resources:
            raise Unresolvable(f"GetAtt {name}.{attribute}: no such resource")
        resource = self.resources[name]
        if attribute == "Arn" and name in self.physical and self.physical[name].startswith("arn:"):
            return self.physical[name]
        return _get_att(name, attribute, resource["Type"], resource.get("Properties") or {})

    def condition(self, name: str) -> bool:
        conditions = self.cfn.get("Conditions") or {}
        if name not in conditions:
            raise Unresolvable(f"Condition {name}: not defined")
        return bool(self.resolve(conditions[name]))

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"  # ${!Literal}
            if expression in variables:
                return str(self.resolve(variables[expression]))
            if "." in expression and not expression.startswith("AWS::"):
                resource, attribute = expression.split(".", 1)
                return self.get_att(resource, attribute)
            return str(self.ref(expression))

        return _SUB_VARIABLE.sub(one, text)

    def resolve(self, value: Any) -> Any:
        """The value with every intrinsic replaced; AWS::NoValue items dropped."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                name, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.get_att(name, attribute)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, variables)
            if key == "Fn::If":
                condition, then, otherwise = arg
                return self.resolve(then if self.condition(condition) else otherwise)
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Join":
                delimiter, items = arg
                return str(delimiter).join(str(v) for v in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                delimiter, text = arg
                return str(self.resolve(text)).split(delimiter)
            if key.startswith("Fn::"):
                raise Unresolvable(f"{key}: not modelled in tests/sam_template.py")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}


# -- IAM ---------------------------------------------------------------------------------------------


def iam_pattern(text: str, case_sensitive: bool) -> re.Pattern[str]:
    # IAM wildcards: * any run of characters (across : and /), ? one character; nothing else is special.
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(f"^{body}$", 0 if case_sensitive else re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    policy: str  # which entry of the function's Policies it came from (a readable label)
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditional: bool = False

    def matches(self, action: str, resource: str) -> bool:
        return any(iam_pattern(a, False).match(action) for a in self.actions) and any(
            iam_pattern(r, True).match(resource) for r in self.resources
        )


def allows(statements: Iterable[Statement], action: str, resource: str) -> bool:
    """IAM's decision for one identity-based policy set: an explicit Deny wins, else any Allow.
    A statement with a Condition is not counted as granting (none of ours has one)."""
    statements = list(statements)
    if any(s.effect == "Deny" and s.matches(action, resource) for s in statements):
        return False
    return any(s.effect == "Allow" and not s.conditional and s.matches(action, resource) for s in statements)


def _as_tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in (value if isinstance(value, list) else [value]))


def _policy_label(entry: Any) -> str:
    """DynamoDBCrudPolicy(StateTable), Statement(PostToConnections), ... for a SAM Policies item."""
    if isinstance(entry, dict) and "Fn::If" in entry:
        return _policy_label(entry["Fn::If"][1]) + f" if {entry['Fn::If'][0]}"
    if isinstance(entry, str):
        return entry
    ((name, args),) = entry.items()
    if name == "Statement":
        sids = [s.get("Sid", "?") for s in (args if isinstance(args, list) else [args])]
        return f"Statement({', '.join(sids)})"

    def short(v: Any) -> str:
        if isinstance(v, dict) and len(v) == 1:
            ((k, a),) = v.items()
            return a if k == "Ref" else ".".join(a) if k == "Fn::GetAtt" and isinstance(a, list) else str(a)
        return str(v)

    return f"{name}({', '.join(short(v) for v in (args or {}).values())})"


# -- the functions -----------------------------------------------------------------------------------


@dataclass
class Function:
    logical_id: str
    code_dir: str  # functions/<code_dir>/app.py
    handler: str
    environment: dict[str, str]
    statements: list[Statement] = field(default_factory=list)

    def allows(self, action: str, resource: str) -> bool:
        return allows(self.statements, action, resource)


def role_statements(resolver: Resolver, role_logical_id: str, labels: list[str]) -> list[Statement]:
    """The inline policies of a role, resolved (managed policies are AWS's: logs and X-Ray only)."""
    role = resolver.resources[role_logical_id]["Properties"]
    statements = []
    for policy in resolver.resolve(role.get("Policies") or []):
        name = str(policy.get("PolicyName", ""))
        # SAM names them <Role>Policy<index in the Policies list>.
        number = re.search(r"Policy(\d+)$", name)
        label = labels[int(number.group(1))] if number and int(number.group(1)) < len(labels) else name
        for statement in policy["PolicyDocument"]["Statement"]:
            statements.append(
                Statement(
                    policy=label,
                    effect=statement.get("Effect", "Allow"),
                    actions=_as_tuple(statement.get("Action", [])),
                    resources=_as_tuple(statement.get("Resource", [])),
                    conditional="Condition" in statement,
                )
            )
    return statements


def functions(physical: Mapping[str, str] | None = None) -> dict[str, Function]:
    """Every AWS::Serverless::Function of the template by logical id, as deployed: environment
    (Globals merged by the translator) and role statements resolved."""
    return _functions(
        TEMPLATE.read_text(), tuple(sorted((physical or {}).items())), tuple(PARAMETERS.items())
    )


@cache
def _functions(text: str, physical: tuple[tuple[str, str], ...], _: object) -> dict[str, Function]:
    cfn = _translated(text)
    source = _parsed(text)
    resolver = Resolver(cfn, dict(physical))
    found: dict[str, Function] = {}
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        key = str(props["Code"]["S3Key"]).rstrip("/")
        role = props["Role"]["Fn::GetAtt"][0]
        labels = [
            _policy_label(p)
            for p in (source["Resources"].get(logical_id, {}).get("Properties", {}).get("Policies") or [])
        ]
        found[logical_id] = Function(
            logical_id=logical_id,
            code_dir=key.removeprefix("functions/"),
            handler=str(props.get("Handler", "")),
            environment={
                k: str(v)
                for k, v in resolver.resolve((props.get("Environment") or {}).get("Variables", {})).items()
            },
            statements=role_statements(resolver, role, labels),
        )
    return found


def functions_by_code_dir(physical: Mapping[str, str] | None = None) -> dict[str, Function]:
    return {f.code_dir: f for f in functions(physical).values()}
