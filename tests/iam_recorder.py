"""pytest plugin: every AWS call a Lambda function's code makes in the tests, checked against that
function's role as template.yaml deploys it (tests/sam_template.py).

Recording: a botocore event handler added to `botocore.handlers.BUILTIN_HANDLERS`, the list every
botocore session registers when it is created (moto hooks in the same way), so every client is
covered: `kubilitics.adapters.aws.client()`, the management API client, moto-backed or not.

Attribution: `functions/<name>/app.py` modules are wrapped as they are imported (a meta path finder):
their `handler` sets a context variable while it runs. The variable follows the function's work into
the threads it starts (Thread.start, ThreadPoolExecutor.submit, when called from project code; never
into moto's own threads: what moto's Step Functions interpreter does is the state machine's doing).
Calls made outside a handler (test code, fixtures, the local server: another process) are not
attributed. No product code changes for this: wrapping at import sees every in-process handler.

Resources: a call's resource is matched to the Settings field that named it (the table, secret,
state machine, function or WebSocket endpoint); the check puts in its place what template.yaml sets
that variable to for the function, so the grant matched is the one the deployed function would use.

A test during which an attributed call was not allowed fails; one made outside any test's call phase
(a fixture, a thread that outlived its test) fails the session. `pytest --iam-record FILE` writes
the calls as JSON for `python -m tests.iam_check --from FILE`.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.abc
import importlib.machinery
import json
import sys
import sysconfig
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.thread import _worker as _pool_worker
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
_PROJECT = (str(REPO / "shared") + "/", str(REPO / "functions") + "/")
_STDLIB = sysconfig.get_paths()["stdlib"] + "/"

current_function: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "kubilitics_iam_function", default=None
)
# botocore operation names whose IAM action has another name.
_ACTIONS = {("lambda", "Invoke"): "InvokeFunction"}
_TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
_CONNECTION = "<connectionId>"


@dataclass(frozen=True)
class Call:
    """One kind of call: `setting` is the Settings field whose value named the resource (None: no
    setting did, `observed` is then the resource), `suffix` the part of the ARN past that resource."""

    function: str  # functions/<function>/app.py
    action: str  # IAM action, e.g. dynamodb:PutItem
    setting: str | None
    suffix: str
    observed: str = field(compare=False)  # as the call named it (the first one seen)


class Recorder:
    def __init__(self) -> None:
        self.calls: Counter[Call] = Counter()
        self.tests: dict[Call, str] = {}  # the first test that made each call
        self.in_test: set[Call] = set()
        self.checked: set[Call] = set()  # already checked by a test's own check
        self.test_id = ""
        self.lock = threading.Lock()

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls[call] += 1
            self.tests.setdefault(call, self.test_id)
            self.in_test.add(call)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {**asdict(call), "count": count, "test": self.tests.get(call, "")}
            for call, count in sorted(self.calls.items(), key=lambda item: repr(item[0]))
        ]


recorder = Recorder()


@contextmanager
def recording() -> Iterator[Recorder]:
    """Record into a fresh Recorder (tests of this plugin: their calls are not checked)."""
    global recorder
    saved, recorder = recorder, Recorder()
    try:
        yield recorder
    finally:
        recorder = saved


@contextmanager
def attributed(function: str) -> Iterator[None]:
    """Run as if inside functions/<function>/app.py's handler."""
    token = current_function.set(function)
    try:
        yield
    finally:
        current_function.reset(token)


# -- the botocore hook ---------------------------------------------------------------------------


def _stash_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    if current_function.get() is not None:
        context["kubilitics_api_params"] = params


def _record(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    function = current_function.get()
    if function is None:
        return
    api = context.get("kubilitics_api_params") or {}
    service = model.service_model.signing_name or model.service_model.endpoint_prefix
    for action, resource, suffix in _resources(service, model.name, api, params.get("url", "")):
        setting = _setting_naming(resource, service)
        observed = resource + suffix
        # Unnamed by any setting: the resource itself is all there is to check (kept in `suffix`).
        recorder.add(Call(function, action, setting, suffix if setting else observed, observed))


def _resources(service: str, operation: str, api: dict[str, Any], url: str) -> Iterator[tuple[str, str, str]]:
    """(IAM action, resource as named in the request, ARN suffix) for each resource a call touches."""
    action = f"{service}:{_ACTIONS.get((service, operation), operation)}"
    if service == "dynamodb":
        if operation in ("BatchWriteItem", "BatchGetItem"):
            for table in api.get("RequestItems", {}):
                yield action, table, ""
        elif operation in ("TransactWriteItems", "TransactGetItems"):
            # IAM authorizes each item's own action (there is no dynamodb:TransactWriteItems grant).
            for item in api.get("TransactItems", []):
                for kind, request in item.items():
                    yield f"dynamodb:{_TRANSACT.get(kind, 'GetItem')}", request["TableName"], ""
        elif "TableName" in api:
            index = api.get("IndexName")
            yield action, api["TableName"], f"/index/{index}" if index else ""
        else:
            yield action, "*", ""
    elif service == "execute-api":
        # The management API: the endpoint is the stage, the resource each connection.
        method = (
            "DELETE" if operation == "DeleteConnection" else "GET" if operation == "GetConnection" else "POST"
        )
        endpoint = url.split("/@connections/")[0]
        yield "execute-api:ManageConnections", endpoint, f"/{method}/@connections/{_CONNECTION}"
    else:
        for key in ("SecretId", "stateMachineArn", "executionArn", "FunctionName", "RoleArn", "Name"):
            if key in api:
                yield action, str(api[key]), ""
                return
        yield action, "*", ""


def names_a_resource(field: str) -> bool:
    """A Settings field that names a stack resource (a table, secret, state machine, function, the
    WebSocket stage): these are what a recorded resource is matched to."""
    return field.endswith(("_table", "_arn", "_function")) or field == "websocket_endpoint"


def _setting_naming(resource: str, service: str) -> str | None:
    try:
        from kubilitics.config import get_settings

        settings = get_settings()
    except Exception:
        return None
    for name, value in settings:
        if not isinstance(value, str) or not value or not names_a_resource(name):
            continue
        if value == resource or (service == "execute-api" and resource.rstrip("/") == value.rstrip("/")):
            return name
        if service == "lambda" and resource.endswith(f":function:{value}"):
            return name
    return None


def _install_botocore_hook() -> None:
    import boto3
    import botocore.handlers

    hooks = [("before-parameter-build", _stash_params), ("before-call", _record)]
    for hook in hooks:
        if hook not in botocore.handlers.BUILTIN_HANDLERS:
            botocore.handlers.BUILTIN_HANDLERS.append(hook)
            if boto3.DEFAULT_SESSION is not None:  # made before this plugin: register there too
                boto3.DEFAULT_SESSION._session.register(*hook)


# -- attribution ---------------------------------------------------------------------------------


def _wrap_handler(function: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        with attributed(function):
            return handler(event, context)

    run._kubilitics_iam = True  # type: ignore[attr-defined]
    return run


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: Any, function: str):
        self._loader, self._function = loader, function

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        handler = getattr(module, "handler", None)
        if callable(handler) and not getattr(handler, "_kubilitics_iam", False):
            module.handler = _wrap_handler(self._function, handler)

    def __getattr__(self, name: str) -> Any:  # get_code, get_source, ... for tools that ask
        return getattr(self._loader, name)


class _FunctionModules(importlib.abc.MetaPathFinder):
    """`functions.<name>.app`, loaded as usual, its handler wrapped."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        parts = fullname.split(".")
        if len(parts) != 3 or parts[0] != "functions" or parts[2] != "app":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, parts[1])
        return spec


def _from_project() -> bool:
    """The nearest caller outside the standard library is project code (not moto, not a library)."""
    frame = sys._getframe(2)
    while frame is not None and (
        frame.f_code.co_filename.startswith(_STDLIB) or frame.f_code.co_filename == __file__
    ):
        frame = frame.f_back  # type: ignore[assignment]
    return frame is not None and frame.f_code.co_filename.startswith(_PROJECT)


def _install_thread_propagation() -> None:
    start, submit = threading.Thread.start, ThreadPoolExecutor.submit
    if getattr(start, "_kubilitics_iam", False):
        return

    def thread_start(self: threading.Thread) -> None:
        # A pool's worker outlives the submission that started it: its work items carry their own
        # context (pool_submit), the worker none.
        pooled = getattr(self, "_target", None) is _pool_worker
        if current_function.get() is not None and not pooled and _from_project():
            run, context = self.run, contextvars.copy_context()
            self.run = lambda: context.run(run)  # type: ignore[method-assign]
        start(self)

    def pool_submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if current_function.get() is not None and _from_project():
            return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)
        return submit(self, fn, *args, **kwargs)

    thread_start._kubilitics_iam = True  # type: ignore[attr-defined]
    threading.Thread.start = thread_start  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = pool_submit  # type: ignore[method-assign,assignment]


def install() -> None:
    _install_botocore_hook()
    _install_thread_propagation()
    if not any(isinstance(finder, _FunctionModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FunctionModules())


# -- the check -----------------------------------------------------------------------------------


def concrete_resource(call: Call, environment: dict[str, str]) -> str | None:
    """The call's resource in the deployed stack: the value template.yaml gives the variable behind
    `call.setting`, as an ARN. None when the template does not set that variable for the function."""
    if call.setting is None:
        return call.suffix
    from kubilitics.config import ENV_ALIASES, ENV_PREFIX

    from tests import sam_template as t

    variable = ENV_ALIASES.get(call.setting, (ENV_PREFIX + call.setting.upper(),))[0]
    value = environment.get(variable)
    if not value:
        return None
    service = call.action.split(":")[0]
    if service == "dynamodb":
        return f"arn:aws:dynamodb:{t.REGION}:{t.ACCOUNT}:table/{value}{call.suffix}"
    if service == "lambda" and not value.startswith("arn:"):
        return f"arn:aws:lambda:{t.REGION}:{t.ACCOUNT}:function:{value}{call.suffix}"
    if service == "execute-api":
        endpoint = urlparse(value)  # https://<api id>.execute-api.<region>.amazonaws.com/<stage>
        api_id, stage = endpoint.hostname.split(".")[0] if endpoint.hostname else "", endpoint.path.strip("/")
        return f"arn:aws:execute-api:{t.REGION}:{t.ACCOUNT}:{api_id}/{stage}{call.suffix}"
    return value + call.suffix


@dataclass(frozen=True)
class Verdict:
    call: Call
    logical_id: str
    resource: str | None
    allowed: bool
    reason: str = ""

    def describe(self) -> str:
        where = self.resource or f"(unset: {self.reason})"
        return f"{self.logical_id}: {self.call.action} on {where}  [as called: {self.call.observed}]"


@functools.cache
def _functions() -> dict[str, Any]:
    from tests import sam_template

    return sam_template.functions_by_code_dir()


def verdict(call: Call, functions: dict[str, Any] | None = None) -> Verdict:
    functions = _functions() if functions is None else functions
    function = functions.get(call.function)
    if function is None:
        return Verdict(
            call, f"functions/{call.function}", None, False, "no function of the template has this code"
        )
    resource = concrete_resource(call, function.environment)
    if resource is None:
        from kubilitics.config import ENV_PREFIX

        reason = f"the template does not set {ENV_PREFIX}{(call.setting or '').upper()} for it"
        return Verdict(call, function.logical_id, None, False, reason)
    return Verdict(call, function.logical_id, resource, function.allows(call.action, resource))


def denied(calls: set[Call] | list[Call]) -> list[Verdict]:
    return [v for v in (verdict(c) for c in calls) if not v.allowed]


# -- pytest hooks --------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--iam-record", metavar="FILE", help="write the AWS calls each Lambda function made (JSON)"
    )


def pytest_configure(config: pytest.Config) -> None:
    install()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with recorder.lock:
        recorder.in_test = set()
        recorder.test_id = item.nodeid
    result = yield
    with recorder.lock:
        made = set(recorder.in_test)
    recorder.checked |= made
    refused = denied(made) if made else []
    if refused:
        lines = "\n  ".join(v.describe() for v in refused)
        raise AssertionError(f"IAM: the function's role in template.yaml does not allow:\n  {lines}")
    return result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--iam-record")
    if path:
        Path(path).write_text(json.dumps(recorder.to_json(), indent=1))
    # Calls no test's own check saw (made by fixtures, or by threads after their test ended).
    with recorder.lock:
        late = set(recorder.calls) - recorder.checked
    refused = denied(late) if late else []
    if refused:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_sep(
                "=", "IAM: calls the function's role in template.yaml does not allow", red=True
            )
            for v in refused:
                reporter.write_line(f"{v.describe()}  (first in {recorder.tests.get(v.call, '?')})")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
