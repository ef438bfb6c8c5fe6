"""The deployment's own identity holds only the roles of deploy/rbac/: it may impersonate and read.

The resources function runs with a ServiceAccount bound to exactly those ClusterRoles. What a caller
changes is changed with the caller's rights (alice may edit her namespace, so her write succeeds);
the same write in service mode is the service's own, and the service may not write.
"""

from __future__ import annotations

import importlib
import json
import uuid
from pathlib import Path

import pytest
import yaml

from tests.pods_testbed import create_namespace, delete_namespace
from tests.support import LambdaContext, load_event

pytestmark = pytest.mark.cluster


@pytest.fixture()
def service_kubeconfig(k8s_cluster, tmp_path: Path):
    """A kubeconfig whose user is a ServiceAccount bound to the shipped ClusterRoles only."""
    ns = create_namespace(k8s_cluster, "svc-identity")
    name = f"kubilitics-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl("create", "serviceaccount", name, "-n", ns)
    for role in ("kubilitics-impersonator", "kubilitics-shared-reader"):
        k8s_cluster.kubectl(
            "create",
            "clusterrolebinding",
            f"{name}-{role}",
            f"--clusterrole={role}",
            f"--serviceaccount={ns}:{name}",
        )
    token = k8s_cluster.kubectl("create", "token", name, "-n", ns, "--duration=1h").stdout.strip()
    document = yaml.safe_load(Path(k8s_cluster.kubeconfig).read_text())
    context = next(c for c in document["contexts"] if c["name"] == k8s_cluster.context)
    document["users"] = [{"name": context["context"]["user"], "user": {"token": token}}]
    path = tmp_path / "service-kubeconfig"
    path.write_text(yaml.safe_dump(document))
    yield path, ns
    for role in ("kubilitics-impersonator", "kubilitics-shared-reader"):
        k8s_cluster.kubectl("delete", "clusterrolebinding", f"{name}-{role}", check=False)
    delete_namespace(k8s_cluster, ns)


def create_configmap(
    settings_env, kubeconfig: Path, token: str, namespace: str, name: str
) -> tuple[int, dict]:
    from kubilitics import container

    settings_env.setenv("KUBILITICS_KUBECONFIG", str(kubeconfig))
    container.reset()
    handler = importlib.import_module("functions.resources.app").handler
    body = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}
    )
    event = load_event("resources/create_resource.json", token=token, body=body)
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/api/v1/resources/ConfigMap"
    event["pathParameters"] = {"kind": "ConfigMap"}
    event["headers"]["content-length"] = str(len(body))
    response = handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_impersonating_and_reading_is_all_the_service_needs(
    aws, settings_env, k8s_cluster, mint, service_kubeconfig
):
    kubeconfig, ns = service_kubeconfig
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl(
        "create", "rolebinding", "alice-edit", "-n", ns, "--clusterrole=edit", f"--user=kubilitics:{alice}"
    )
    token = mint(sub=alice, scopes="read,write", groups=())

    status, body = create_configmap(settings_env, kubeconfig, token, ns, "made-by-alice")
    assert status == 201, body
    assert k8s_cluster.kubectl(
        "get", "configmap", "made-by-alice", "-n", ns, "-o", "name"
    ).stdout.strip() == ("configmap/made-by-alice")

    settings_env.setenv("KUBILITICS_KUBE_AUTHORIZATION_MODE", "service")
    status, body = create_configmap(settings_env, kubeconfig, token, ns, "made-by-the-service")
    assert (status, body["error"]) == (403, "forbidden"), body
    assert "system:serviceaccount:" in body["message"]  # the service's own name, refused
