"""template.yaml checked as a whole, as the SAM translator expands it (tests/sam_template.py):
references resolve, every function gets the settings it needs, HTTP routes and function apps agree
in both directions, WebSocket route keys have handler branches, the state machine's tasks exist.

Which environment variables must be set (the list of variables comes from Settings and ENV_ALIASES):
  * every variable whose Settings default is a local stand-in (a `kubilitics-...` name or
    "unknown"): tables, stack name, build commit and date: on every function;
  * a variable naming a stack resource (`*_table`, `*_arn`, `*_function`, `websocket_endpoint`): on
    every function whose role may use that resource; a variable a function gets only for itself
    (not from Globals) must name a resource its role may use;
  * each function's environment must make a valid production Settings (KUBILITICS_ENV=production
    refuses a missing JWT secret, bad JSON, an identity provider without JWKS URL, ...).
  Every other variable has a default that holds on AWS (timeouts, limits, prices, the model, ...)
  and may be absent. `region` comes from AWS_REGION, which the Lambda runtime sets.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import sam_template as t
from tests.iam_recorder import names_a_resource
from tests.support import offline_process_env

REPO = Path(__file__).resolve().parents[2]
# What a variable naming a stack resource names, as an ARN a role's statements can be matched to.
SERVICE_OF = {"_table": "dynamodb", "_secret_arn": "secretsmanager", "_function": "lambda"}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return t.translated()


@pytest.fixture(scope="module")
def functions() -> dict[str, t.Function]:
    return t.functions()


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every intrinsic function in a template fragment, with where it is."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("Ref", "Fn::GetAtt", "Fn::Sub"):
            return [(path, value)]  # resolving it resolves what it holds
        for key, item in value.items():
            found += _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _walk(item, f"{path}[{index}]")
    return found


# -- references ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kubeconfig_secret", ["", t.KUBECONFIG_SECRET_ARN], ids=["no-kubeconfig", "kubeconfig"]
)
def test_every_ref_getatt_and_sub_resolves(cfn, kubeconfig_secret, monkeypatch):
    monkeypatch.setitem(t.PARAMETERS, "KubeconfigSecretArn", kubeconfig_secret)
    resolver = t.Resolver(cfn)
    problems = []
    for section in ("Resources", "Outputs", "Conditions"):
        for path, intrinsic in _walk(cfn.get(section, {}), section):
            try:
                resolver.resolve(intrinsic)
            except t.Unresolvable as exc:
                problems.append(f"{path}: {exc}")
    assert not problems, "\n".join(problems)


def test_depends_on_names_resources(cfn):
    for name, resource in cfn["Resources"].items():
        depends = resource.get("DependsOn", [])
        for target in [depends] if isinstance(depends, str) else depends:
            assert target in cfn["Resources"], f"{name} DependsOn {target}, which does not exist"


def test_the_resolver_refuses_what_names_nothing(cfn):
    resolver = t.Resolver(cfn)
    for broken in ({"Ref": "NoSuchTable"}, {"Fn::GetAtt": ["StateTable", "NoSuchAttribute"]},
                   {"Fn::Sub": "arn:${AWS::Partition}:states:::${NoSuchMachine.Arn}"}):  # fmt: skip
        with pytest.raises(t.Unresolvable):
            resolver.resolve(broken)


# -- environment --------------------------------------------------------------------------------------


def _variables() -> dict[str, str]:
    """Each environment variable the code reads -> its Settings field (config.py, not a hand list)."""
    from kubilitics.config import ENV_ALIASES, ENV_PREFIX, Settings

    return {
        variable: name
        for name in Settings.model_fields
        for variable in ENV_ALIASES.get(name, (ENV_PREFIX + name.upper(),))
    }


def _variable_of(field: str) -> str:
    from kubilitics.config import ENV_ALIASES, ENV_PREFIX

    return ENV_ALIASES.get(field, (ENV_PREFIX + field.upper(),))[0]


def _local_stand_ins() -> list[str]:
    from kubilitics.config import Settings

    return [
        name
        for name, spec in Settings.model_fields.items()
        if isinstance(spec.default, str)
        and (spec.default.startswith("kubilitics-") or spec.default == "unknown")
    ]


def _resource_arn(field: str, value: str) -> str:
    from tests.iam_recorder import Call, concrete_resource

    if field == "websocket_endpoint":
        action, suffix = "execute-api:ManageConnections", "/POST/@connections/probe"
    else:
        # By the field's name; other ARNs (the state machine's) say their service themselves.
        service = next((s for end, s in SERVICE_OF.items() if field.endswith(end)), "")
        action, suffix = f"{service or value.split(':')[2]}:*", ""
    return concrete_resource(Call("", action, field, suffix, value), {_variable_of(field): value}) or ""


def _may_use(function: t.Function, arn: str) -> bool:
    return any(
        s.effect == "Allow" and t.iam_pattern(r, True).match(arn)
        for s in function.statements
        for r in s.resources
    )


def test_the_template_sets_only_variables_the_code_reads(functions):
    known = _variables()
    for function in functions.values():
        unknown = sorted(v for v in function.environment if v.startswith("KUBILITICS_") and v not in known)
        assert not unknown, f"{function.logical_id} sets {unknown}: no Settings field reads them (config.py)"


def test_local_stand_in_defaults_are_replaced_on_every_function(functions):
    stand_ins = _local_stand_ins()
    assert "state_table" in stand_ins and "stack_name" in stand_ins  # the rule still finds them
    for function in functions.values():
        missing = [_variable_of(f) for f in stand_ins if not function.environment.get(_variable_of(f))]
        assert not missing, f"{function.logical_id} would use local defaults for {missing}"


def test_a_function_is_told_the_name_of_each_resource_its_role_may_use(functions):
    """A grant without the variable naming its resource, or a function's own variable naming a
    resource its role may not use (what review H1 found), is a misconfiguration."""
    source = t.source_template()
    global_variables = set(source["Globals"]["Function"]["Environment"]["Variables"])
    fields = [f for f in _variables().values() if names_a_resource(f)]
    values = {f: v for fn in functions.values() for f in fields if (v := fn.environment.get(_variable_of(f)))}
    # Each resource the code can be told about exists in the stack: some function is told its name.
    problems = [f"no function gets {_variable_of(f)}" for f in fields if f not in values]
    for function in functions.values():
        for field, value in values.items():
            arn, variable = _resource_arn(field, value), _variable_of(field)
            if _may_use(function, arn) and function.environment.get(variable) != value:
                problems.append(f"{function.logical_id}: may use {arn} but {variable} does not name it")
            own = variable in function.environment and variable not in global_variables
            if own and function.environment[variable] == value and not _may_use(function, arn):
                problems.append(f"{function.logical_id}: {variable} names {arn}, which its role may not use")
    assert not problems, "\n".join(problems)


def test_each_function_environment_is_a_valid_production_configuration(functions):
    from kubilitics.config import Settings

    for function in functions.values():
        environment = {**function.environment, "AWS_REGION": t.REGION}  # set by the Lambda runtime
        settings = Settings.from_env(environment)
        assert settings.env == "production", function.logical_id


# -- HTTP API -----------------------------------------------------------------------------------------


def _template_routes(cfn: dict[str, Any], resolver: t.Resolver) -> dict[tuple[str, str], str]:
    """(METHOD, path) -> the function's logical id, from the HTTP API the translator generated."""
    arns = {
        resolver.get_att(name, "Arn"): name
        for name, r in cfn["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
    }
    routes = {}
    for api in (
        r
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Api" and "Body" in r["Properties"]
    ):
        for path, operations in api["Properties"]["Body"]["paths"].items():
            for method, operation in operations.items():
                uri = resolver.resolve(operation["x-amazon-apigateway-integration"]["uri"])
                function_arn = re.search(r"/functions/(.+)/invocations$", uri)
                assert function_arn and function_arn.group(1) in arns, (
                    f"{method} {path} -> {uri}: no such function"
                )
                routes[(method.upper(), path)] = arns[function_arn.group(1)]
    return routes


PROBE = """
import importlib, json, sys
served = {}
for name in sys.argv[1:]:
    app = getattr(importlib.import_module(f"functions.{name}.app"), "app", None)
    if app is not None:  # an HTTP function: its FastAPI app
        served[name] = sorted([m.upper(), p] for p, ops in app.openapi()["paths"].items() for m in ops)
print(json.dumps(served))
"""


@pytest.fixture(scope="module")
def served_routes(functions, tmp_path_factory) -> dict[str, set[tuple[str, str]]]:
    """What each function's app serves, loaded in a fresh process (a function module freezes the
    garbage collector's view of everything it loaded, as on Lambda)."""
    env = offline_process_env(tmp_path_factory.mktemp("none") / "kubeconfig", f"{REPO}:{REPO / 'shared'}")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *sorted(f.code_dir for f in functions.values())],
        capture_output=True, text=True, env=env, cwd=str(tmp_path_factory.mktemp("cwd")), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {name: {tuple(r) for r in routes} for name, routes in json.loads(done.stdout).items()}


def test_every_http_route_reaches_a_function_whose_app_serves_it(cfn, functions, served_routes):
    routes = _template_routes(cfn, t.Resolver(cfn))
    assert routes, "the template has no HTTP routes"
    for (method, path), logical_id in sorted(routes.items()):
        code_dir = functions[logical_id].code_dir
        assert (method, path) in served_routes.get(code_dir, set()), (
            f"{method} {path} goes to {logical_id}, whose app (functions/{code_dir}) does not serve it"
        )


def test_every_route_a_function_app_serves_is_in_the_template(cfn, functions, served_routes):
    routes = _template_routes(cfn, t.Resolver(cfn))
    by_dir = {f.code_dir: f.logical_id for f in functions.values()}
    missing = [
        f"{method} {path} (functions/{code_dir})"
        for code_dir, served in served_routes.items()
        for method, path in sorted(served)
        if routes.get((method, path)) != by_dir[code_dir]
    ]
    assert not missing, "served but not routed to that function by template.yaml: " + ", ".join(missing)


# -- WebSocket API ------------------------------------------------------------------------------------


def _websocket_routes(cfn: dict[str, Any]) -> dict[str, str]:
    """Route key -> the logical id of the function its integration invokes."""
    resolver = t.Resolver(cfn)
    resources = cfn["Resources"]
    arns = {
        resolver.get_att(n, "Arn"): n for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"
    }
    routes = {}
    for route in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Route"):
        integration_id = resolver.resolve(route["Target"]).removeprefix("integrations/")
        integration = next(
            r["Properties"]
            for n, r in resources.items()
            if r["Type"] == "AWS::ApiGatewayV2::Integration" and resolver.ref(n) == integration_id
        )
        uri = resolver.resolve(integration["IntegrationUri"])
        function_arn = re.search(r"/functions/(.+)/invocations$", uri)
        assert function_arn and function_arn.group(1) in arns, f"route {route['RouteKey']} -> {uri}"
        routes[route["RouteKey"]] = arns[function_arn.group(1)]
    return routes


def _route_key_branches(source: str) -> set[str]:
    """The route keys functions/websocket/app.py compares `route_key` with."""
    keys = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Attribute)
            and node.left.attr == "route_key"
        ):
            keys |= {
                c.value for c in node.comparators if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
    return keys


def test_every_websocket_route_key_has_a_handler_branch(cfn, functions):
    from kubilitics.errors import KubiliticsError
    from kubilitics.services import realtime_messages
    from kubilitics.services.chat import is_chat_message

    routes = _websocket_routes(cfn)
    api = next(
        r["Properties"]
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Api" and r["Properties"].get("ProtocolType") == "WEBSOCKET"
    )
    # The handler reads the message's `action`, so that is what must select the route.
    assert api["RouteSelectionExpression"] == "$request.body.action"
    assert {"$connect", "$disconnect", "$default"} <= set(routes)
    for key, logical_id in routes.items():
        code_dir = functions[logical_id].code_dir
        source = (REPO / "functions" / code_dir / "app.py").read_text()
        if key in ("$connect", "$disconnect"):
            assert key in _route_key_branches(source), f"functions/{code_dir}/app.py has no {key} branch"
        elif key == "$default":  # anything else: a chat message or the realtime service's parser
            assert "realtime.handle(" in source and "is_chat_message(" in source
        elif not is_chat_message(key, json.dumps({"action": key})):
            try:
                realtime_messages.parse(json.dumps({"action": key}))
            except KubiliticsError as exc:  # missing fields are fine; an unknown action is not
                assert exc.details.get("field") != "action", f"route {key}: no message with action {key!r}"
    # An action with no route of its own still arrives ($default).
    unrouted = set(realtime_messages.ACTIONS) - set(routes)
    assert not unrouted or "$default" in routes


# -- state machine ------------------------------------------------------------------------------------


def test_the_state_machine_tasks_invoke_functions_that_exist_and_may_be_invoked(cfn):
    from kubilitics.services.investigation_tasks import InvestigationTasks
    from kubilitics.services.investigations import PROGRESS

    resolver = t.Resolver(cfn)
    lambdas = {
        resolver.get_att(n, "Arn"): n
        for n, r in cfn["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
    }
    machines = {
        n: r["Properties"]
        for n, r in cfn["Resources"].items()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
    }
    assert machines
    for name, machine in machines.items():
        text = (REPO / machine["DefinitionS3Location"]["Key"]).read_text()
        substitutions = resolver.resolve(machine.get("DefinitionSubstitutions", {}))
        unknown = set(re.findall(r"\$\{(\w+)\}", text)) - set(substitutions)
        assert not unknown, f"{name}: {unknown} not in DefinitionSubstitutions"
        for key, value in substitutions.items():
            text = text.replace("${" + key + "}", str(value))
        role = machine["RoleArn"]["Fn::GetAtt"][0]
        statements = t.role_statements(resolver, role, [])
        tasks = {s_name: s for s_name, s in json.loads(text)["States"].items() if s["Type"] == "Task"}
        assert tasks, name
        for state_name, state in tasks.items():
            resource = state["Resource"]
            target = (
                state.get("Parameters", {}).get("FunctionName")
                if resource.startswith("arn:aws:states:::lambda:invoke")
                else resource
            )
            assert target in lambdas, f"{name}.{state_name} invokes {target}: not a function of the template"
            assert t.allows(statements, "lambda:InvokeFunction", target), (
                f"{name}'s role may not invoke {target}"
            )
            task = state.get("Parameters", {}).get("Payload", {}).get("task")
            if lambdas[target] == "InvestigationTasksFunction":  # the task names its handler knows
                assert task in (*PROGRESS, "mark_failed") and hasattr(InvestigationTasks, f"_{task}"), task
