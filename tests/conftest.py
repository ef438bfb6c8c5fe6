"""Fixtures shared by every test folder.

`aws`: moto (in-process) with the DynamoDB tables built from template.yaml, and settings pointing at
them. `mint`: tokens signed with the test secret. `k8s_cluster` / `k8s_namespace`: the real test
cluster (tests/testbed/cluster.py).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# Every AWS call a function's handler makes is checked against its role in template.yaml.
pytest_plugins = ("tests.iam_recorder",)
TEST_JWT_SECRET = "test-secret-for-kubilitics-unit-tests"

# The testbed fixtures, loaded once under one module name (tests/testbed/conftest.py does the same).
_NAME = "kubilitics_testbed_cluster"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, REPO / "tests" / "testbed" / "cluster.py")
    assert _spec and _spec.loader
    sys.modules[_NAME] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_NAME])
k8s_cluster = sys.modules[_NAME].k8s_cluster
k8s_namespace = sys.modules[_NAME].k8s_namespace


@pytest.fixture()
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment for Settings; tests add what they need, then call container.reset()."""
    from kubilitics import container

    for var in ("KUBECONFIG", "KUBILITICS_AWS_ENDPOINT_URL", "KUBILITICS_ANTHROPIC_API_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KUBILITICS_ENV", "test")
    monkeypatch.setenv("KUBILITICS_JWT_SECRET", TEST_JWT_SECRET)
    monkeypatch.setenv("KUBILITICS_KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    container.reset()
    yield monkeypatch
    container.reset()


@pytest.fixture()
def aws(settings_env: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto in-process with the template's tables; yields a DynamoDB client."""
    from kubilitics import container
    from kubilitics.adapters.aws import client
    from kubilitics.local.tables import create_tables
    from moto import mock_aws

    with mock_aws():
        container.reset()
        create_tables(client("dynamodb"), container.get_container().settings)
        yield client("dynamodb")
    container.reset()


@pytest.fixture()
def mint(settings_env: pytest.MonkeyPatch) -> Callable[..., str]:
    """mint(sub="alice", scopes="read", token_type="user", **claims) -> a signed token.

    Its groups are ["cluster-admins"] unless given: the test cluster binds that group (impersonated
    as `kubilitics:cluster-admins`) to cluster-admin, so scopes alone decide. RBAC tests pass
    `groups=()` and bind the user themselves."""
    from kubilitics.auth.impersonation import DEVELOPMENT_ADMIN_GROUP
    from kubilitics.container import get_container

    def _mint(sub: str = "alice", scopes: str = "read", token_type: str = "user", **kwargs: Any) -> str:
        services = get_container()
        now = kwargs.pop("now", services.clock.now())
        kwargs.setdefault("groups", (DEVELOPMENT_ADMIN_GROUP,))
        token, _ = services.token_codec.mint(
            sub=sub, scopes=scopes.split(","), token_type=token_type, now=now, **kwargs
        )
        return token

    return _mint


@pytest.fixture()
def fake_messages_api() -> Iterator[Any]:
    """A local server speaking the Anthropic Messages API (tests/fakes/messages_api.py): script its
    replies and errors, then read every request it received."""
    from tests.fakes.messages_api import FakeMessagesAPI

    with FakeMessagesAPI() as api:
        yield api


@pytest.fixture()
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's DynamoDB with per-item atomic writes, as real DynamoDB (see kubilitics.local.moto_atomic)."""
    from kubilitics.local.moto_atomic import make_dynamodb_atomic

    make_dynamodb_atomic(monkeypatch.setattr)


@pytest.fixture()
def investigation_machine(aws: Any, atomic_moto: None, settings_env: pytest.MonkeyPatch) -> Iterator[str]:
    """statemachine/investigation.asl.json on moto's Step Functions interpreter, its Lambda tasks run
    by functions/investigation_tasks/app.py in this process (kubilitics.local.workflows); settings
    point at it. Yields the state machine ARN; waits for running executions before moto goes away."""
    import importlib

    from kubilitics import container
    from kubilitics.adapters.aws import client
    from kubilitics.local import workflows

    handler = importlib.import_module("functions.investigation_tasks.app").handler
    arn = workflows.install(
        client("stepfunctions"),
        container.get_container().settings.region,
        {workflows.TASKS_FUNCTION: handler},
        patch=settings_env.setattr,
        set_item=settings_env.setitem,
    )
    settings_env.setenv("KUBILITICS_STATE_MACHINE_ARN", arn)
    container.reset()
    yield arn
    workflows.wait_for_executions(client("stepfunctions"), arn)
