"""The IAM checks themselves (tests/sam_template.py, tests/iam_recorder.py): IAM's matching rules, what
the recorder attributes and refuses, and the template's policies on moto's own IAM engine, with the
credentials of each function's role (moto enforces IAM once its no-auth request count is used up).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import iam_recorder
from tests import sam_template as t

FUNCTIONS = sorted(
    name for name, r in t.source_template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
)


def test_iam_wildcards_and_deny():
    allow = t.Statement("p", "Allow", ("dynamodb:Get*", "secretsmanager:GetSecretValue"),
                        ("arn:aws:dynamodb:*:*:table/app", "arn:aws:dynamodb:*:*:table/app/index/*",
                         "arn:aws:secretsmanager:r:1:secret:key-??????"))  # fmt: skip
    assert t.allows([allow], "dynamodb:GetItem", "arn:aws:dynamodb:r:1:table/app")
    assert t.allows([allow], "DynamoDB:getitem", "arn:aws:dynamodb:r:1:table/app")  # actions: any case
    assert not t.allows(
        [allow], "dynamodb:GetItem", "arn:aws:dynamodb:r:1:table/App"
    )  # resources: exact case
    assert t.allows([allow], "dynamodb:GetItem", "arn:aws:dynamodb:r:1:table/app/index/gsi1")
    assert not t.allows([allow], "dynamodb:GetItem", "arn:aws:dynamodb:r:1:table/app2")
    assert not t.allows([allow], "dynamodb:PutItem", "arn:aws:dynamodb:r:1:table/app")
    assert t.allows([allow], "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:r:1:secret:key-AbCdEf")
    assert not t.allows(
        [allow], "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:r:1:secret:key-AbCdE"
    )
    deny = t.Statement("p", "Deny", ("dynamodb:*",), ("*",))
    assert not t.allows([allow, deny], "dynamodb:GetItem", "arn:aws:dynamodb:r:1:table/app")


def test_policy_templates_expand_to_actions_on_the_table_and_its_indexes():
    functions = t.functions()
    state = f"arn:aws:dynamodb:{t.REGION}:{t.ACCOUNT}:table/{t.STACK}-StateTable"
    admin = functions["AiAdminFunction"]
    assert admin.allows("dynamodb:Query", f"{state}/index/gsi1")  # DynamoDBCrudPolicy: index/* too
    assert admin.allows("dynamodb:UpdateItem", state)
    observability = functions["ObservabilityFunction"]  # DynamoDBReadPolicy
    assert observability.allows("dynamodb:GetItem", state)
    assert not observability.allows("dynamodb:PutItem", state)
    # Review L7: the functions that never use the state table have no grant on it.
    for name in ("ResourcesFunction", "PodsFunction", "WatchRelayFunction", "ShellSessionFunction"):
        assert not functions[name].allows("dynamodb:GetItem", state), name


def test_a_recorded_call_is_checked_against_the_resource_the_template_names(aws, settings_env):
    from botocore.exceptions import ClientError
    from kubilitics import container
    from kubilitics.adapters.aws import client

    arn = client("secretsmanager").create_secret(Name="ai-key", SecretString="sk-ant-x")["ARN"]
    settings_env.setenv("KUBILITICS_AI_SECRET_ARN", arn)
    settings_env.setenv("KUBILITICS_SHELL_SESSION_FUNCTION", "shell-session")
    container.reset()
    with iam_recorder.recording() as recorded:
        with iam_recorder.attributed("ai_investigations"):
            client("secretsmanager").get_secret_value(SecretId=arn)
            client("secretsmanager").put_secret_value(SecretId=arn, SecretString="sk-ant-y")
        with iam_recorder.attributed("health"), pytest.raises(ClientError):
            client("lambda").invoke(FunctionName="shell-session", InvocationType="Event", Payload=b"{}")
        client("secretsmanager").get_secret_value(SecretId=arn)  # test code: not attributed
    verdicts = {v.call.action: v for v in map(iam_recorder.verdict, recorded.calls)}
    assert set(verdicts) == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "lambda:InvokeFunction",
    }
    read = verdicts["secretsmanager:GetSecretValue"]
    assert (read.logical_id, read.allowed) == ("AiInvestigationsFunction", True)
    # Checked against the deployed stack's AiSecret, not moto's name for it.
    assert read.resource == f"arn:aws:secretsmanager:{t.REGION}:{t.ACCOUNT}:secret:{t.STACK}-AiSecret-AbCdEf"
    assert not verdicts["secretsmanager:PutSecretValue"].allowed  # only AiAdminFunction stores the key
    invoke = verdicts["lambda:InvokeFunction"]
    assert not invoke.allowed and "KUBILITICS_SHELL_SESSION_FUNCTION" in invoke.reason


def test_a_broken_policy_is_caught():
    """The same call, checked against the role without AiInvestigationsFunction's AiSecret grant."""
    cfn = t.translated()
    role = cfn["Resources"]["AiInvestigationsFunctionRole"]["Properties"]
    secret_grants = [p for p in role["Policies"] if "AiSecret" in json.dumps(p)]
    assert len(secret_grants) == 1
    call = iam_recorder.Call("ai_investigations", "secretsmanager:GetSecretValue", "ai_secret_arn", "", "x")
    function = t.functions()["AiInvestigationsFunction"]
    assert iam_recorder.verdict(call, {"ai_investigations": function}).allowed
    role["Policies"].remove(secret_grants[0])
    broken = t.Function(
        **{
            **vars(function),
            "statements": t.role_statements(t.Resolver(cfn), "AiInvestigationsFunctionRole", []),
        }
    )
    refused = iam_recorder.verdict(call, {"ai_investigations": broken})
    assert not refused.allowed and refused.resource == function.environment["KUBILITICS_AI_SECRET_ARN"]


# -- moto's IAM engine, with each function's own role ------------------------------------------------


def _moto_resource_of_secret(self: Any) -> str:
    # moto checks Secrets Manager actions against Resource "*" only; name the secret as AWS does.
    secret_id = self._get_param("SecretId")
    secrets = self.backend.secrets
    return secrets[secret_id].arn if secret_id and secret_id in secrets else "*"


def _moto_resource_of_table(self: Any) -> str:
    table, index = self.body.get("TableName"), self.body.get("IndexName")
    if not table:
        return "*"
    arn = f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{table}"
    return f"{arn}/index/{index}" if index else arn


def _denied(exc: BaseException) -> bool:
    # moto answers a JSON service's AccessDenied in its XML form; botocore then reports the HTTP status.
    cause = exc.__cause__ or exc
    return "is not authorized to perform: secretsmanager:GetSecretValue" in str(cause)


@pytest.fixture()
def own_role(aws, settings_env, monkeypatch) -> Iterator[Callable[[str], tuple[t.Function, str]]]:
    """own_role("AiAdminFunction") -> (the function, the AI secret's ARN): creates the function's role in
    moto's IAM with its policies as the template expands them (resources: the tables and secret of
    this test), switches this process's AWS clients to that role's credentials and turns moto's IAM
    enforcement on (INITIAL_NO_AUTH_ACTION_COUNT = 0: from then on every request is authorized)."""
    import boto3
    import botocore.session
    import moto.settings
    from kubilitics import container
    from kubilitics.adapters.aws import client
    from kubilitics.config import get_settings
    from moto.dynamodb.responses import DynamoHandler
    from moto.secretsmanager.responses import SecretsManagerResponse

    secret = client("secretsmanager").create_secret(Name="ai-key", SecretString="sk-ant-api03-role-test")[
        "ARN"
    ]
    settings_env.setenv("KUBILITICS_AI_SECRET_ARN", secret)
    container.reset()
    settings = get_settings()
    # Each Globals variable's Ref -> this test's resource of the same setting (tables, the secret).
    globals_env = t.source_template()["Globals"]["Function"]["Environment"]["Variables"]
    variables = {
        f"KUBILITICS_{name.upper()}": getattr(settings, name) for name in type(settings).model_fields
    }
    physical = {
        value["Ref"]: str(variables[variable])
        for variable, value in globals_env.items()
        if isinstance(value, dict) and "Ref" in value and isinstance(variables.get(variable), str)
    }
    functions = t.functions(physical)
    resources = t.translated()["Resources"]
    # Role set-up runs unauthenticated, with the test's own (dummy) credentials.
    admin = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=t.REGION
    )
    iam, sts = admin.client("iam"), admin.client("sts")
    monkeypatch.setattr(
        SecretsManagerResponse, "_determine_resource", _moto_resource_of_secret, raising=False
    )
    monkeypatch.setattr(DynamoHandler, "_determine_resource", _moto_resource_of_table, raising=False)
    # The project's clients come from boto3's default session: one whose credentials each role sets
    # (one session for all: a new one per role would load botocore's models again).
    roles = botocore.session.Session()
    monkeypatch.setattr(
        boto3, "DEFAULT_SESSION", boto3.session.Session(botocore_session=roles, region_name=t.REGION)
    )

    def as_role(logical_id: str) -> tuple[t.Function, str]:
        function = functions[logical_id]
        monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
        trust = resources[f"{logical_id}Role"]["Properties"]["AssumeRolePolicyDocument"]
        role = iam.create_role(RoleName=logical_id, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        statements = [
            {"Effect": s.effect, "Action": list(s.actions), "Resource": list(s.resources)}
            for s in function.statements
        ]
        document = {"Version": "2012-10-17", "Statement": statements}
        iam.put_role_policy(RoleName=logical_id, PolicyName="template", PolicyDocument=json.dumps(document))
        credentials = sts.assume_role(RoleArn=role["Arn"], RoleSessionName=logical_id)["Credentials"]
        monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        roles.set_credentials(
            credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
        )
        container.reset()  # clients made from now on sign as the role
        return function, secret

    yield as_role
    container.reset()


def test_with_its_own_role_each_function_reads_the_ai_secret_exactly_when_the_template_grants_it(own_role):
    from kubilitics.container import get_container
    from kubilitics.errors import KubiliticsError

    outcomes = {}
    for logical_id in FUNCTIONS:
        function, secret = own_role(logical_id)
        try:
            read = get_container().anthropic_api_key() == "sk-ant-api03-role-test"
        except KubiliticsError as exc:
            assert _denied(exc), f"{logical_id}: {exc!r} {exc.__cause__!r}"
            read = False
        # moto's IAM engine and tests/sam_template.py's reading of the policies agree.
        assert read == function.allows("secretsmanager:GetSecretValue", secret), logical_id
        outcomes[logical_id] = read
    assert outcomes["AiInvestigationsFunction"]  # review H1: start() reads the AI key
    assert not outcomes["ClusterFunction"]


def test_a_handler_runs_with_its_own_role(own_role, mint):
    """GET /api/v1/ai/config through AiAdminFunction's handler: rate-limit counter, revocation check,
    configuration and AI key, each authorized by moto against the function's role."""
    import importlib

    from tests.support import invoke, load_event

    token = mint(scopes="admin")
    handler = importlib.import_module("functions.ai_admin.app").handler
    own_role("AiAdminFunction")
    status, _, body = invoke(handler, load_event("ai_admin/get_config.json", token=token))
    assert status == 200, body
    assert body["llm_configuration"]["api_key_prefix"]
    # With a role that may not read the AI secret, the same request is refused by moto's IAM.
    own_role("ClusterFunction")
    status, _, body = invoke(handler, load_event("ai_admin/get_config.json", token=token))
    assert (status, body["error"]) == (503, "service_unavailable"), body
