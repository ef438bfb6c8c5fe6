"""The investigation state machine without AWS: moto's Step Functions interpreter runs the real
`statemachine/investigation.asl.json`, and its Lambda tasks run in this process.

moto executes state machines only when asked (`stepfunctions.execute_state_machine`); its Lambda
task integration calls `lambda:Invoke`, which here reaches moto's Docker-less Lambda backend, whose
`invoke` is replaced by a router to in-process handlers. Retries, catches, the fallback state and
the data flow between states are moto's interpreter running our definition: nothing is short-cut.
Used by the local server (moto as a threaded server) and by the tests (moto in-process).
"""

from __future__ import annotations

import json
import logging
import operator
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubilitics.local.tables import REPO_ROOT

log = logging.getLogger(__name__)

ASL = REPO_ROOT / "statemachine" / "investigation.asl.json"
TASKS_FUNCTION = "kubilitics-investigation-tasks"
STATE_MACHINE_NAME = "kubilitics-investigation"
ACCOUNT = "123456789012"  # moto's default account
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/kubilitics-investigation-state-machine"

Handler = Callable[[dict[str, Any], Any], Any]
Patch = Callable[[Any, str, Any], None]


def tasks_function_arn(region: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{TASKS_FUNCTION}"


@dataclass
class LocalLambdaContext:
    """What the Lambda runtime passes a handler (Powertools reads these fields)."""

    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deadline: float = field(default_factory=lambda: time.time() + 120)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


def enable_execution(set_item: Callable[[Any, str, Any], None] = operator.setitem) -> None:
    """moto's config: execute state machines; Lambda without Docker. `set_item` lets tests undo it."""
    from moto.core.config import default_user_config
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    set_item(default_user_config, "stepfunctions", {"execute_state_machine": True})
    set_item(default_user_config, "lambda", {**default_user_config.get("lambda", {}), "use_docker": False})
    # The interpreter builds a boto3 client for every task from boto3's default session, which is not
    # safe to use from several threads at once (concurrent executions): build them one at a time.
    factory = lambda_eval_utils.boto_client_for
    if not getattr(factory, "_kubilitics_locked", False):
        set_item(lambda_eval_utils.__dict__, "boto_client_for", _locked(factory))


def _locked(factory: Callable[..., Any]) -> Callable[..., Any]:
    lock = threading.Lock()

    def build(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return factory(*args, **kwargs)

    build._kubilitics_locked = True  # type: ignore[attr-defined]
    return build


class LambdaTimeout(Exception):
    """The invocation outlived the function's timeout: Lambda ends it (`Sandbox.Timedout`)."""


def _within(handler: Handler, event: dict[str, Any], name: str, timeout: float | None) -> Any:
    """The handler's result, or LambdaTimeout after `timeout` seconds, as the Lambda runtime. Lambda
    stops the process then; a thread cannot be stopped, so here the late call runs on unobserved."""
    if timeout is None:
        return handler(event, LocalLambdaContext(name))
    context = LocalLambdaContext(name, deadline=time.time() + timeout)
    outcome: dict[str, Any] = {}

    def invocation() -> None:
        try:
            outcome["result"] = handler(event, context)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=invocation, name=f"{name}-invocation", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise LambdaTimeout(
            f"RequestId: {context.aws_request_id} Error: Task timed out after {timeout:.2f} seconds"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def route_lambda_tasks(
    handlers: Mapping[str, Handler], patch: Patch = setattr, timeout_seconds: float | None = None
) -> None:
    """Lambda invocations of these function names run the handlers here; errors come back as a
    Lambda function error (`errorType` = the exception's class name), as the Lambda runtime reports.
    An invocation longer than `timeout_seconds` (the function's Timeout in template.yaml) is a
    `Sandbox.Timedout` function error, as Lambda reports a timed-out invocation to Step Functions."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    original = LambdaSimpleBackend.invoke
    routes = dict(handlers)

    def invoke(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> bytes | str | None:
        name = function_name.split(":function:")[-1].split(":")[0]
        handler = routes.get(name)
        if handler is None:
            return original(self, function_name, qualifier, body, headers, response_headers)
        raw = body.decode() if isinstance(body, bytes) else body
        event = json.loads(raw or "{}")
        try:
            result = _within(handler, event, name, timeout_seconds)
        except LambdaTimeout as exc:
            log.warning("%s timed out: %s", name, exc)
            response_headers["x-amz-function-error"] = "Unhandled"
            timed_out = {"errorType": "Sandbox.Timedout", "errorMessage": str(exc)}
            return json.dumps(timed_out).encode()
        except Exception as exc:
            if type(exc).__module__.startswith("kubilitics"):
                log.warning("%s failed: %s: %s", name, type(exc).__name__, exc)
            else:
                log.exception("%s failed", name)
            response_headers["x-amz-function-error"] = "Unhandled"
            error = {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": []}
            return json.dumps(error).encode()
        return json.dumps(result, default=str).encode()

    patch(LambdaSimpleBackend, "invoke", invoke)


def definition(function_arn: str, path: Path = ASL) -> str:
    """The ASL with the template's DefinitionSubstitutions applied."""
    return path.read_text().replace("${InvestigationTasksFunctionArn}", function_arn)


def create_state_machine(sfn: Any, function_arn: str, name: str = STATE_MACHINE_NAME) -> str:
    """Create (or find) the investigation state machine; its ARN."""
    try:
        created = sfn.create_state_machine(
            name=name, definition=definition(function_arn), roleArn=ROLE_ARN, type="STANDARD"
        )
        return str(created["stateMachineArn"])
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") != "StateMachineAlreadyExists":
            raise
    for machine in sfn.list_state_machines()["stateMachines"]:
        if machine["name"] == name:
            return str(machine["stateMachineArn"])
    raise RuntimeError(f"state machine {name} exists but was not listed")


def install(
    sfn: Any,
    region: str,
    handlers: Mapping[str, Handler],
    patch: Patch = setattr,
    set_item: Callable[[Any, str, Any], None] = operator.setitem,
    timeout_seconds: float | None = None,
) -> str:
    """Everything above at once; the state machine's ARN (for KUBILITICS_STATE_MACHINE_ARN)."""
    enable_execution(set_item)
    route_lambda_tasks(handlers, patch, timeout_seconds)
    return create_state_machine(sfn, tasks_function_arn(region))


def wait_for_executions(sfn: Any, state_machine_arn: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Wait until no execution runs (tests: before moto is torn down under a running execution)."""
    deadline = time.monotonic() + timeout
    while True:
        running = sfn.list_executions(stateMachineArn=state_machine_arn, statusFilter="RUNNING")["executions"]
        if not running or time.monotonic() > deadline:
            return list(running)
        time.sleep(0.1)


def tasks_timeout(template: Path = REPO_ROOT / "template.yaml") -> float:
    """The task function's Timeout in template.yaml (what Lambda allows an invocation)."""
    import yaml

    from kubilitics.local.tables import _CloudFormationLoader

    document = yaml.load(template.read_text(), Loader=_CloudFormationLoader)
    return float(document["Resources"]["InvestigationTasksFunction"]["Properties"]["Timeout"])


def tasks_handler() -> Handler:
    """functions/investigation_tasks/app.py's handler, loaded from the repository (the local server
    runs the very file the Lambda runs)."""
    import importlib.util

    path = REPO_ROOT / "functions" / "investigation_tasks" / "app.py"
    spec = importlib.util.spec_from_file_location("kubilitics_local_investigation_tasks", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Handler = module.handler
    return handler
