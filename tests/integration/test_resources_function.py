"""The resources function's Lambda handler, driven with events/resources payloads through Mangum.

DynamoDB is moto (tables from template.yaml); Kubernetes is the real test cluster, each test in a
fresh namespace (k8s_namespace).
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.support import LambdaContext, load_event, revoke

EVENTS = {
    "GET": "resources/list_resources.json",
    "POST": "resources/create_resource.json",
    "PUT": "resources/update_resource.json",
    "DELETE": "resources/delete_resource.json",
}
ALL_SCOPES = "read,write,delete"


@pytest.fixture()
def handler(aws):
    return importlib.import_module("functions.resources.app").handler


@pytest.fixture()
def api(aws, on_cluster, handler, mint):
    """api(method, path, query=None, body=None, token=<read,write,delete>) -> (status, headers, body)."""
    default_token = mint(scopes=ALL_SCOPES)

    def call(
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        token: Any = ...,  # ... = the default token, None = no token
        raw_body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        event = load_event(EVENTS[method], token=default_token if token is ... else token)
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["pathParameters"] = dict(zip(("kind", "namespace", "name"), path.split("/")[4:], strict=False))
        event["rawQueryString"] = urlencode(query or {})
        event["queryStringParameters"] = {k: str(v) for k, v in (query or {}).items()} or None
        text = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        event.pop("body", None)
        event["headers"]["content-length"] = "0"
        if text is not None:
            event["body"] = text
            event["headers"]["content-length"] = str(len(text.encode()))
        event["headers"].update(headers or {})
        response = handler(event, LambdaContext())
        response_headers = {k.lower(): v for k, v in response["headers"].items()}
        return response["statusCode"], response_headers, json.loads(response["body"])

    return call


def names(body: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in body["items"]]


def expect_error(result: tuple[int, dict[str, str], Any], status: int, code: str) -> dict[str, Any]:
    got_status, headers, body = result
    assert (got_status, body["error"]) == (status, code), body
    assert body["trace_id"] == headers["x-request-id"]
    assert set(body) >= {"error", "message", "details", "timestamp", "trace_id"}
    return body


def configmap(name: str, namespace: str | None = None, **labels: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"key": name}}


def kubectl_json(cluster, *args: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


@pytest.fixture()
def twenty_three(on_cluster, k8s_namespace):
    """cm-00 .. cm-22 labelled batch=pages and parity=even|odd, plus the namespace's kube-root-ca.crt."""
    items = [
        configmap(f"cm-{i:02d}", k8s_namespace, batch="pages", parity="odd" if i % 2 else "even")
        for i in range(23)
    ]
    on_cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    return k8s_namespace


# ---- GET: paging, counts, selectors, sorting ------------------------------------------------------


def test_list_pages_have_exact_counts_without_a_selector(api, twenty_three):
    # 23 ConfigMaps plus kube-root-ca.crt, which every namespace has.
    status, headers, body = api(
        "GET", "/api/v1/resources/ConfigMap", {"namespace": twenty_three, "limit": 10}
    )
    assert status == 200, body
    assert (body["kind"], body["api_version"], body["total_count"]) == ("ConfigMap", "v1", 24)
    assert body["page"] == {"limit": 10, "offset": 0, "returned": 10, "has_more": True}
    assert names(body) == [f"cm-{i:02d}" for i in range(10)]
    assert headers["x-ratelimit-limit"] == "200"  # the read category

    _, _, last = api(
        "GET", "/api/v1/resources/ConfigMap", {"namespace": twenty_three, "limit": 10, "offset": 20}
    )
    assert names(last) == ["cm-20", "cm-21", "cm-22", "kube-root-ca.crt"]
    assert last["total_count"] == 24
    assert last["page"] == {"limit": 10, "offset": 20, "returned": 4, "has_more": False}

    for offset in (24, 100):
        _, _, past = api("GET", "/api/v1/resources/ConfigMap", {"namespace": twenty_three, "offset": offset})
        assert (past["total_count"], past["items"]) == (24, [])
        assert past["page"] == {"limit": 50, "offset": offset, "returned": 0, "has_more": False}


def test_list_walks_every_page_with_a_label_selector(api, twenty_three):
    seen, flags, counts = [], [], []
    for offset in (0, 7, 14, 21):
        status, _, body = api(
            "GET",
            "/api/v1/resources/configmaps",
            {"namespace": twenty_three, "label_selector": "batch=pages", "limit": 7, "offset": offset},
        )
        assert status == 200, body
        assert body["total_count"] == 23
        seen += names(body)
        flags.append(body["page"]["has_more"])
        counts.append(body["page"]["returned"])
    assert seen == [f"cm-{i:02d}" for i in range(23)]
    assert flags == [True, True, True, False]
    assert counts == [7, 7, 7, 2]


def test_list_with_set_based_and_field_selectors(api, twenty_three):
    query = {"namespace": twenty_three, "label_selector": "parity in (even),batch", "limit": 5, "offset": 5}
    _, _, evens = api("GET", "/api/v1/resources/cm", query)
    assert evens["total_count"] == 12  # cm-00, cm-02, ..., cm-22
    assert names(evens) == ["cm-10", "cm-12", "cm-14", "cm-16", "cm-18"]
    assert evens["page"]["has_more"] is True

    _, _, one = api(
        "GET",
        "/api/v1/resources/ConfigMap",
        {"namespace": twenty_three, "field_selector": "metadata.name=cm-07"},
    )
    assert (one["total_count"], names(one)) == (1, ["cm-07"])

    _, _, others = api(
        "GET",
        "/api/v1/resources/ConfigMap",
        {"namespace": twenty_three, "field_selector": "metadata.name!=cm-07", "label_selector": "parity=odd"},
    )
    assert others["total_count"] == 10 and "cm-07" not in names(others)


def test_list_sorted_by_name_pages_through_the_sorted_order(api, twenty_three):
    seen = []
    for offset in (0, 10, 20):
        _, _, body = api(
            "GET",
            "/api/v1/resources/ConfigMap",
            {"namespace": twenty_three, "label_selector": "batch=pages", "limit": 10, "offset": offset,
             "sort_by": "name", "sort_order": "desc"},
        )  # fmt: skip
        assert body["total_count"] == 23
        seen += names(body)
    assert seen == [f"cm-{i:02d}" for i in reversed(range(23))]
    assert body["page"] == {"limit": 10, "offset": 20, "returned": 3, "has_more": False}


def test_list_sorted_by_creation_and_age(api, on_cluster, k8s_namespace):
    for name in ("first", "second", "third"):  # creationTimestamp has one-second resolution
        on_cluster.kubectl("create", "configmap", name, "-n", k8s_namespace)
        time.sleep(1.1)
    base = {"namespace": k8s_namespace, "field_selector": "metadata.name!=kube-root-ca.crt"}
    orders = {
        ("created", "asc"): ["first", "second", "third"],
        ("created", "desc"): ["third", "second", "first"],
        ("age", "asc"): ["third", "second", "first"],  # youngest first
        ("age", "desc"): ["first", "second", "third"],
    }
    for (sort_by, sort_order), expected in orders.items():
        _, _, body = api(
            "GET", "/api/v1/resources/ConfigMap", {**base, "sort_by": sort_by, "sort_order": sort_order}
        )
        assert names(body) == expected, (sort_by, sort_order)
        assert body["total_count"] == 3
    _, _, default_order = api("GET", "/api/v1/resources/ConfigMap", {**base, "sort_by": "created"})
    assert names(default_order) == ["first", "second", "third"]  # sort_order defaults to asc


def test_listed_items_are_kubernetes_objects_a_client_can_put_back(api, twenty_three):
    _, _, body = api(
        "GET",
        "/api/v1/resources/ConfigMap",
        {"namespace": twenty_three, "field_selector": "metadata.name=cm-03"},
    )
    item = body["items"][0]
    assert (item["apiVersion"], item["kind"]) == ("v1", "ConfigMap")
    assert set(item["metadata"]) >= {"creationTimestamp", "resourceVersion", "uid"}  # camelCase
    assert "managedFields" not in item["metadata"]  # left out, as kubectl does, unless asked for
    _, _, full = api(
        "GET",
        "/api/v1/resources/ConfigMap",
        {"namespace": twenty_three, "field_selector": "metadata.name=cm-03", "show_managed_fields": "true"},
    )
    managed = full["items"][0]["metadata"].pop("managedFields")
    assert managed[0]["operation"] in ("Update", "Apply") and full["items"][0] == item
    item["data"]["added"] = "yes"
    status, _, updated = api("PUT", f"/api/v1/resources/ConfigMap/{twenty_three}/cm-03", body=item)
    assert status == 200, updated
    assert updated["data"] == {"key": "cm-03", "added": "yes"}


def test_list_of_pods_from_the_event_payload(api, on_cluster, k8s_namespace):
    on_cluster.kubectl("run", "web-1", "-n", k8s_namespace, "--image=nginx:1.27", "--labels=app=web")
    on_cluster.kubectl("run", "db-1", "-n", k8s_namespace, "--image=nginx:1.27", "--labels=app=db")
    status, _, body = api(
        "GET", "/api/v1/resources/Pod", {"namespace": k8s_namespace, "label_selector": "app=web", "limit": 50}
    )
    assert status == 200, body
    assert (body["kind"], body["total_count"], names(body)) == ("Pod", 1, ["web-1"])
    assert body["items"][0]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_kinds_are_matched_by_kind_plural_short_name_and_group(api, twenty_three):
    for kind in ("ConfigMap", "configmap", "configmaps", "cm", "CM"):
        status, _, body = api("GET", f"/api/v1/resources/{kind}", {"namespace": twenty_three, "limit": 1})
        assert (status, body["kind"], body["total_count"]) == (200, "ConfigMap", 24), kind
    status, _, body = api("GET", "/api/v1/resources/deployments.apps", {"namespace": twenty_three})
    assert (status, body["kind"], body["api_version"], body["total_count"]) == (
        200,
        "Deployment",
        "apps/v1",
        0,
    )


def test_unknown_kind_lists_the_valid_kinds(api):
    body = expect_error(api("GET", "/api/v1/resources/Gizmo"), 400, "invalid_resource_kind")
    assert body["message"] == "Unknown Kubernetes kind: Gizmo"
    assert {"Pod", "ConfigMap", "Deployment", "Node", "CustomResourceDefinition"} <= set(
        body["details"]["valid_kinds"]
    )
    assert body["valid_kinds"] == body["details"]["valid_kinds"]  # top level, as the reference's example


def test_cluster_scoped_kind_is_listed_and_namespace_is_ignored(api, on_cluster):
    nodes = on_cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
    status, _, body = api("GET", "/api/v1/resources/Node")
    assert status == 200 and body["total_count"] == len(nodes) > 0
    assert sorted(f"node/{n}" for n in names(body)) == sorted(nodes)
    assert body["items"][0]["kind"] == "Node"
    _, _, with_namespace = api("GET", "/api/v1/resources/nodes", {"namespace": "default"})
    assert with_namespace["total_count"] == len(nodes)


def test_kind_without_list_verb(api):
    body = expect_error(api("GET", "/api/v1/resources/TokenReview"), 405, "method_not_allowed")
    assert body["details"]["supported_verbs"] == ["create"]


@pytest.mark.parametrize(
    ("query", "code", "problem"),
    [
        ({"label_selector": "app=("}, "invalid_label_selector", "found '(' at position 4, expected a value"),
        ({"label_selector": "app in (a b)"}, "invalid_label_selector", "expected ',' or ')'"),
        ({"label_selector": "Bad_Prefix/app=x"}, "invalid_label_selector", "DNS-1123 subdomain"),
        ({"field_selector": "status.phase"}, "invalid_field_selector", "has no operator"),
        (
            {"field_selector": "spec.color=red"},
            "invalid_field_selector",
            '"spec.color" is not a known field selector: only "metadata.name"',
        ),
    ],
)
def test_bad_selectors_are_refused_with_the_problem_named(api, k8s_namespace, query, code, problem):
    body = expect_error(
        api("GET", "/api/v1/resources/ConfigMap", {"namespace": k8s_namespace, **query}), 400, code
    )
    assert problem in body["message"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"sort_by": "size"}, "sort_by"),
        ({"sort_order": "up"}, "sort_order"),
        ({"namespace": "Bad_Namespace"}, "namespace"),
    ],
)
def test_bad_list_parameters(api, query, parameter):
    body = expect_error(api("GET", "/api/v1/resources/ConfigMap", query), 400, "invalid_parameter")
    assert body["details"]["parameter"] == parameter


def test_limit_bounds_are_inclusive(api, twenty_three):
    for limit, returned in ((1, 1), (500, 24)):
        status, _, body = api(
            "GET", "/api/v1/resources/ConfigMap", {"namespace": twenty_three, "limit": limit}
        )
        assert (status, body["page"]["returned"]) == (200, returned)


def test_listing_a_namespace_that_does_not_exist_is_404(api):
    body = expect_error(
        api("GET", "/api/v1/resources/Pod", {"namespace": "no-such-namespace-x1"}), 404, "not_found"
    )
    assert body["details"] == {"namespace": "no-such-namespace-x1"}
    assert body["message"] == "Namespace no-such-namespace-x1 not found"


def test_our_label_selector_check_agrees_with_the_api_server(on_cluster):
    """Every case of the unit tests, asked of the API server directly: same verdict."""
    from kubilitics.adapters.kube_rest import KubeRestClient
    from kubilitics.adapters.kubeconfig import KubeconfigSource
    from kubilitics.errors import KubiliticsError
    from kubilitics.services.selectors import validate_label_selector

    from tests.unit.test_selectors import INVALID_LABEL_SELECTORS, VALID_LABEL_SELECTORS

    context = KubeconfigSource(path=Path(on_cluster.kubeconfig)).get().resolve(None)
    client = KubeRestClient(context)
    cases = VALID_LABEL_SELECTORS + [selector for selector, _ in INVALID_LABEL_SELECTORS]
    for selector in cases:
        try:
            client.get_json(
                "/api/v1/namespaces/default/configmaps",
                timeout=10,
                params={"labelSelector": selector, "limit": 1},
            )
            server_accepts = True
        except KubiliticsError:
            server_accepts = False
        try:
            validate_label_selector(selector)
            we_accept = True
        except KubiliticsError:
            we_accept = False
        assert we_accept == server_accepts, selector


# ---- custom resources -----------------------------------------------------------------------------


@pytest.fixture()
def widget_crd(on_cluster):
    """A namespaced CRD with a unique group and kind (tests may run in parallel on one cluster)."""
    suffix = uuid.uuid4().hex[:8]
    group, kind, plural = f"t{suffix}.kubilitics.test", f"Widget{suffix.upper()}", f"widget{suffix}s"
    names = {"kind": kind, "plural": plural, "singular": f"widget{suffix}", "shortNames": [f"wg{suffix}"]}
    spec_schema = {"type": "object", "properties": {"size": {"type": "integer"}, "color": {"type": "string"}}}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": names,
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
                }
            ],
        },
    }
    on_cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    on_cluster.kubectl("wait", "--for=condition=Established", f"crd/{plural}.{group}", "--timeout=60s")
    yield {
        "group": group,
        "kind": kind,
        "plural": plural,
        "short": f"wg{suffix}",
        "api_version": f"{group}/v1",
    }
    on_cluster.kubectl("delete", "crd", f"{plural}.{group}", "--wait=false", check=False)


def test_custom_resources_created_in_the_test_are_served(api, widget_crd, k8s_namespace):
    kind = widget_crd["kind"]
    manifest = {
        "apiVersion": widget_crd["api_version"],
        "kind": kind,
        "metadata": {"name": "blue", "namespace": k8s_namespace},
        "spec": {"size": 3, "color": "blue"},
    }
    deadline = time.monotonic() + 30
    while True:  # discovery may trail the Established condition by a moment
        status, _, created = api("POST", f"/api/v1/resources/{kind}", body=manifest)
        if status != 400 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status == 201, created
    assert created["spec"] == {"size": 3, "color": "blue"}

    for name in (
        kind,
        widget_crd["plural"],
        widget_crd["short"],
        f"{widget_crd['plural']}.{widget_crd['group']}",
    ):
        status, _, body = api("GET", f"/api/v1/resources/{name}", {"namespace": k8s_namespace})
        assert status == 200, (name, body)
        assert (body["kind"], body["api_version"], body["total_count"]) == (
            kind,
            widget_crd["api_version"],
            1,
        )
        assert names(body) == ["blue"] and body["items"][0]["kind"] == kind

    status, _, patched = api(
        "PUT",
        f"/api/v1/resources/{kind}/{k8s_namespace}/blue",
        {"patch_strategy": "merge_patch"},
        {"spec": {"size": 5}},
    )
    assert status == 200 and patched["spec"] == {"size": 5, "color": "blue"}
    strategic = {"patch_strategy": "strategic_merge_patch"}
    body = expect_error(
        api("PUT", f"/api/v1/resources/{kind}/{k8s_namespace}/blue", strategic, {"spec": {"size": 6}}),
        400,
        "invalid_parameter",
    )
    assert "use merge_patch" in body["message"]
    status, _, _ = api("DELETE", f"/api/v1/resources/{kind}/{k8s_namespace}/blue")
    assert status == 200


# ---- POST ----------------------------------------------------------------------------------------


def test_create_returns_201_with_the_stored_object(api, on_cluster, k8s_namespace):
    status, headers, body = api(
        "POST", "/api/v1/resources/ConfigMap", body=configmap("app-config", k8s_namespace, app="web")
    )
    assert status == 201, body
    assert headers["x-ratelimit-limit"] == "50"  # the write category
    assert body["metadata"]["namespace"] == k8s_namespace and body["metadata"]["uid"]
    assert body["data"] == {"key": "app-config"} and body["metadata"]["labels"] == {"app": "web"}
    assert "managedFields" not in body["metadata"]
    stored = kubectl_json(
        on_cluster, "get", "configmap", "app-config", "-n", k8s_namespace, "--show-managed-fields"
    )
    assert stored["metadata"]["managedFields"]  # the API server keeps them: only the answer leaves them out
    assert stored["metadata"]["uid"] == body["metadata"]["uid"]

    again = expect_error(
        api("POST", "/api/v1/resources/ConfigMap", body=configmap("app-config", k8s_namespace)),
        409,
        "already_exists",
    )
    assert "already exists" in again["message"]


def test_validate_only_is_a_dry_run_answered_as_a_create(api, on_cluster, k8s_namespace):
    status, _, body = api(
        "POST", "/api/v1/resources/ConfigMap", {"validate_only": "true"}, configmap("dry", k8s_namespace)
    )
    assert status == 201, body  # the reference's POST answer, validate_only or not
    assert body["metadata"]["name"] == "dry" and body["data"] == {"key": "dry"}
    missing = on_cluster.kubectl("get", "configmap", "dry", "-n", k8s_namespace, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_a_used_up_quota_is_quota_exceeded(api, on_cluster, k8s_namespace):
    # kube-root-ca.crt already uses the one ConfigMap the quota allows.
    on_cluster.kubectl("create", "quota", "cms", "--hard=configmaps=1", "-n", k8s_namespace)
    deadline = time.monotonic() + 30
    while (
        not kubectl_json(on_cluster, "get", "quota", "cms", "-n", k8s_namespace).get("status", {}).get("used")
    ):
        assert time.monotonic() < deadline, "the quota controller did not count the namespace"
        time.sleep(0.5)
    body = expect_error(
        api("POST", "/api/v1/resources/ConfigMap", body=configmap("over", k8s_namespace)),
        429,
        "quota_exceeded",
    )
    assert "exceeded quota: cms" in body["message"] and body["details"]["reason"] == "ExceededQuota"


def test_creating_in_a_terminating_namespace_is_resource_terminating(api, on_cluster, k8s_namespace):
    held = {**configmap("held", k8s_namespace)}
    held["metadata"]["finalizers"] = ["example.com/hold"]  # keeps the namespace terminating
    on_cluster.kubectl("apply", "-f", "-", input=json.dumps(held))
    on_cluster.kubectl("delete", "namespace", k8s_namespace, "--wait=false")
    try:
        body = expect_error(
            api("POST", "/api/v1/resources/ConfigMap", body=configmap("late", k8s_namespace)),
            409,
            "resource_terminating",
        )
        assert body["details"]["reason"] == "NamespaceTerminating" and "being terminated" in body["message"]
    finally:
        on_cluster.kubectl(
            "patch", "configmap", "held", "-n", k8s_namespace, "--type=merge",
            "-p", '{"metadata": {"finalizers": null}}', check=False,
        )  # fmt: skip


def test_namespace_defaults_to_the_tokens_then_to_default(api, mint, k8s_namespace):
    status, _, body = api(
        "POST", "/api/v1/resources/ConfigMap", {"validate_only": "true"}, configmap("no-namespace")
    )
    assert (status, body["metadata"]["namespace"]) == (201, "default")
    scoped = mint(scopes="write", namespace=k8s_namespace)
    status, _, body = api("POST", "/api/v1/resources/ConfigMap", body=configmap("from-token"), token=scoped)
    assert (status, body["metadata"]["namespace"]) == (201, k8s_namespace)


def test_create_refuses_a_name_that_is_not_dns1123(api, k8s_namespace):
    body = expect_error(
        api("POST", "/api/v1/resources/ConfigMap", body=configmap("Bad_Name", k8s_namespace)),
        400,
        "validation_failed",
    )
    assert body["violations"][0]["field"] == "metadata.name"
    assert body["violations"][0]["reason"] == "invalid_dns1123"
    assert body["details"]["violations"] == body["violations"]


def test_create_with_a_kind_other_than_the_paths(api, k8s_namespace):
    manifest = {**configmap("x", k8s_namespace), "kind": "Secret"}
    body = expect_error(api("POST", "/api/v1/resources/ConfigMap", body=manifest), 400, "validation_failed")
    assert body["violations"][0]["field"] == "kind" and body["violations"][0]["reason"] == "kind_mismatch"
    wrong_version = {**configmap("x", k8s_namespace), "apiVersion": "apps/v1"}
    body = expect_error(
        api("POST", "/api/v1/resources/ConfigMap", body=wrong_version), 400, "validation_failed"
    )
    assert body["violations"][0]["field"] == "apiVersion"


def test_create_without_a_name(api, k8s_namespace):
    manifest = configmap("x", k8s_namespace)
    del manifest["metadata"]["name"]
    body = expect_error(
        api("POST", "/api/v1/resources/ConfigMap", body=manifest), 400, "missing_required_field"
    )
    assert body["details"]["field"] == "metadata.name"


def test_create_fills_kind_and_api_version_and_honours_generate_name(api, k8s_namespace):
    manifest = {"metadata": {"generateName": "gen-", "namespace": k8s_namespace}, "data": {"a": "b"}}
    status, _, body = api("POST", "/api/v1/resources/ConfigMap", body=manifest)
    assert status == 201, body
    assert body["metadata"]["name"].startswith("gen-") and body["kind"] == "ConfigMap"


def test_api_server_validation_becomes_violations(api, k8s_namespace):
    manifest = configmap("bad-key", k8s_namespace)
    manifest["data"] = {"bad key!": "v"}
    body = expect_error(api("POST", "/api/v1/resources/ConfigMap", body=manifest), 400, "validation_failed")
    assert body["violations"][0]["field"] == "data[bad key!]"
    assert body["violations"][0]["reason"] == "FieldValueInvalid"


def test_unknown_fields_are_refused(api, k8s_namespace):
    manifest = configmap("typo", k8s_namespace)
    manifest["dta"] = manifest.pop("data")
    body = expect_error(api("POST", "/api/v1/resources/ConfigMap", body=manifest), 400, "validation_failed")
    assert 'unknown field "dta"' in body["message"]


def test_create_in_a_namespace_that_does_not_exist(api):
    body = expect_error(
        api("POST", "/api/v1/resources/ConfigMap", body=configmap("x", "no-such-namespace-x2")),
        404,
        "not_found",
    )
    assert body["details"] == {"namespace": "no-such-namespace-x2"}


@pytest.mark.parametrize(
    ("raw", "code"), [("{not json", "validation_failed"), ("[1, 2]", "validation_failed")]
)
def test_create_with_a_body_that_is_not_an_object(api, raw, code):
    expect_error(api("POST", "/api/v1/resources/ConfigMap", raw_body=raw), 400, code)


# ---- PUT -----------------------------------------------------------------------------------------


def test_replace_and_a_stale_resource_version(api, on_cluster, k8s_namespace):
    _, _, created = api("POST", "/api/v1/resources/ConfigMap", body=configmap("app-config", k8s_namespace))
    path = f"/api/v1/resources/ConfigMap/{k8s_namespace}/app-config"
    fresh = {**created, "data": {"key1": "value1", "key2": "value2"}}
    status, _, replaced = api("PUT", path, {"patch_strategy": "replace"}, fresh)
    assert status == 200, replaced
    assert replaced["data"] == {"key1": "value1", "key2": "value2"}
    assert replaced["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]

    stale = {**created, "data": {"lost": "update"}}  # still carries the first resourceVersion
    body = expect_error(api("PUT", path, body=stale), 409, "resource_conflict")
    assert "the object has been modified" in body["message"]
    stored = kubectl_json(on_cluster, "get", "configmap", "app-config", "-n", k8s_namespace)
    assert stored["data"] == {"key1": "value1", "key2": "value2"}


def test_merge_patch_keeps_what_it_does_not_mention(api, k8s_namespace):
    api("POST", "/api/v1/resources/ConfigMap", body=configmap("merge-me", k8s_namespace))
    status, _, body = api(
        "PUT", f"/api/v1/resources/cm/{k8s_namespace}/merge-me", {"patch_strategy": "merge_patch"},
        {"data": {"extra": "1"}, "metadata": {"labels": {"patched": "yes"}}},
    )  # fmt: skip
    assert status == 200, body
    assert body["data"] == {"key": "merge-me", "extra": "1"}
    assert body["metadata"]["labels"] == {"patched": "yes"}


def test_strategic_merge_patch_merges_containers_by_name(api, k8s_namespace):
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": k8s_namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "nginx:1.27"},
                        {"name": "sidecar", "image": "nginx:1.28"},
                    ]
                },
            },
        },
    }
    assert api("POST", "/api/v1/resources/Deployment", body=deployment)[0] == 201
    path = f"/api/v1/resources/Deployment/{k8s_namespace}/web"
    change = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.29"}]}}}}
    status, _, merged = api("PUT", path, {"patch_strategy": "strategic_merge_patch"}, change)
    assert status == 200, merged
    containers = merged["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("main", "nginx:1.29"),
        ("sidecar", "nginx:1.28"),
    ]
    # A JSON merge patch replaces the whole list.
    status, _, replaced = api("PUT", path, {"patch_strategy": "merge_patch"}, change)
    assert [c["name"] for c in replaced["spec"]["template"]["spec"]["containers"]] == ["main"]


def test_update_refuses_a_body_that_disagrees_with_the_path(api, k8s_namespace):
    _, _, created = api("POST", "/api/v1/resources/ConfigMap", body=configmap("here", k8s_namespace))
    path = f"/api/v1/resources/ConfigMap/{k8s_namespace}/here"
    renamed = {**created, "metadata": {**created["metadata"], "name": "elsewhere"}}
    body = expect_error(api("PUT", path, body=renamed), 400, "validation_failed")
    assert body["violations"][0] == {
        "field": "metadata.name",
        "reason": "path_mismatch",
        "message": "metadata.name 'elsewhere' does not match 'here' in the path",
    }
    moved = {**created, "metadata": {**created["metadata"], "namespace": "default"}}
    body = expect_error(api("PUT", path, body=moved), 400, "validation_failed")
    assert body["violations"][0]["field"] == "metadata.namespace"
    body = expect_error(api("PUT", path, body={**created, "kind": "Secret"}), 400, "validation_failed")
    assert body["violations"][0]["reason"] == "kind_mismatch"
    expect_error(api("PUT", path, {"patch_strategy": "json_patch"}, created), 400, "invalid_parameter")


def test_update_of_a_missing_object_is_404(api, k8s_namespace):
    body = expect_error(
        api("PUT", f"/api/v1/resources/ConfigMap/{k8s_namespace}/missing", body=configmap("missing")),
        404,
        "not_found",
    )
    assert body["message"] == f"ConfigMap {k8s_namespace}/missing not found"
    assert body["resource_kind"] == "ConfigMap"
    expect_error(
        api(
            "PUT",
            f"/api/v1/resources/ConfigMap/{k8s_namespace}/missing",
            {"patch_strategy": "merge_patch"},
            {"data": {}},
        ),
        404,
        "not_found",
    )


# ---- DELETE --------------------------------------------------------------------------------------


def test_delete_answers_what_the_api_server_answers(api, on_cluster, k8s_namespace):
    api("POST", "/api/v1/resources/ConfigMap", body=configmap("doomed", k8s_namespace))
    status, headers, body = api("DELETE", f"/api/v1/resources/ConfigMap/{k8s_namespace}/doomed")
    assert status == 200, body
    assert headers["x-ratelimit-limit"] == "50"
    assert (body["kind"], body["status"], body["details"]["name"]) == ("Status", "Success", "doomed")
    assert on_cluster.kubectl("get", "configmap", "doomed", "-n", k8s_namespace, check=False).returncode != 0

    missing = expect_error(
        api("DELETE", f"/api/v1/resources/ConfigMap/{k8s_namespace}/doomed"), 404, "not_found"
    )
    assert missing["message"] == f"ConfigMap {k8s_namespace}/doomed not found"
    assert missing["resource_kind"] == "ConfigMap"


def _scheduled_pod(api, on_cluster, namespace: str, name: str, grace: int = 45) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "containers": [{"name": "main", "image": "nginx:1.27"}],
        },
    }
    assert api("POST", "/api/v1/resources/Pod", body=pod)[0] == 201
    deadline = time.monotonic() + 30
    while not kubectl_json(on_cluster, "get", "pod", name, "-n", namespace)["spec"].get("nodeName"):
        assert time.monotonic() < deadline, "pod was not scheduled"
        time.sleep(0.3)


def test_delete_pod_grace_periods(api, on_cluster, k8s_namespace):
    # A scheduled pod terminates gracefully: the answer is the pod with its deletionTimestamp.
    for name, query, grace in (("own-grace", {}, 45), ("short-grace", {"grace_period_seconds": 5}, 5)):
        _scheduled_pod(api, on_cluster, k8s_namespace, name)
        status, _, body = api("DELETE", f"/api/v1/resources/Pod/{k8s_namespace}/{name}", query)
        assert status == 200, body
        assert body["kind"] == "Pod" and body["metadata"]["deletionTimestamp"]
        assert body["metadata"]["deletionGracePeriodSeconds"] == grace, name

    _scheduled_pod(api, on_cluster, k8s_namespace, "forced")
    status, _, body = api(
        "DELETE",
        f"/api/v1/resources/Pod/{k8s_namespace}/forced",
        {"force": "true", "grace_period_seconds": 30},
    )
    assert status == 200 and body["metadata"]["deletionGracePeriodSeconds"] == 0
    gone = on_cluster.kubectl("get", "pod", "forced", "-n", k8s_namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr

    expect_error(
        api("DELETE", f"/api/v1/resources/Pod/{k8s_namespace}/x", {"grace_period_seconds": -1}),
        400,
        "invalid_parameter",
    )


def test_dot_segments_never_reach_the_api_server(api, on_cluster, k8s_namespace):
    # ".." would resolve to the namespace itself on the way to the API server.
    for name in ("..", "."):
        expect_error(
            api("DELETE", f"/api/v1/resources/ConfigMap/{k8s_namespace}/{name}"), 400, "invalid_parameter"
        )
    expect_error(api("DELETE", "/api/v1/resources/ConfigMap/../x"), 400, "invalid_parameter")
    assert (
        on_cluster.kubectl("get", "namespace", k8s_namespace, "-o", "name").stdout.strip()
        == f"namespace/{k8s_namespace}"
    )


# ---- cluster-scoped kinds ------------------------------------------------------------------------


def test_cluster_scoped_objects_use_underscore_as_namespace(api, on_cluster):
    name = f"kubilitics-test-{uuid.uuid4().hex[:8]}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"kubilitics.testbed/ephemeral": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    try:
        status, _, created = api("POST", "/api/v1/resources/ClusterRole", body=role)
        assert status == 201, created
        assert "namespace" not in created["metadata"]
        path = f"/api/v1/resources/ClusterRole/_/{name}"
        status, _, patched = api("PUT", path, {"patch_strategy": "merge_patch"}, {"rules": [
            {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list"]}]})  # fmt: skip
        assert status == 200 and patched["rules"][0]["resources"] == ["pods", "services"]
        body = expect_error(
            api("PUT", f"/api/v1/resources/ClusterRole/default/{name}", body=role), 400, "invalid_parameter"
        )
        assert "cluster-scoped" in body["message"] and "'_'" in body["message"]
        _, _, listed = api(
            "GET", "/api/v1/resources/ClusterRole", {"field_selector": f"metadata.name={name}"}
        )
        assert names(listed) == [name]
        status, _, _ = api("DELETE", path)
        assert status == 200
        expect_error(api("DELETE", path), 404, "not_found")
    finally:
        on_cluster.kubectl("delete", "clusterrole", name, "--ignore-not-found", check=False)


# ---- authentication, scopes, rate-limit categories -----------------------------------------------


def test_requests_without_a_valid_token(api, mint):
    expect_error(api("GET", "/api/v1/resources/Pod", token=None), 401, "unauthorized")
    expect_error(api("GET", "/api/v1/resources/Pod", token="abc.def.ghi"), 401, "unauthorized")
    expired = mint(scopes="read", now=time.time() - 7200, ttl_seconds=3600)
    expect_error(api("GET", "/api/v1/resources/Pod", token=expired), 401, "token_expired")
    expect_error(api("DELETE", "/api/v1/resources/Pod/default/x", token=None), 401, "unauthorized")


def test_a_revoked_token_is_refused(api, mint):

    token = mint(scopes=ALL_SCOPES)
    revoke(token)
    expect_error(api("GET", "/api/v1/resources/Pod", token=token), 401, "token_revoked")


def test_each_method_needs_its_scope(api, mint, k8s_namespace):
    cases = [
        ("GET", "/api/v1/resources/ConfigMap", "exec", "read"),
        ("POST", "/api/v1/resources/ConfigMap", "read", "write"),
        ("PUT", f"/api/v1/resources/ConfigMap/{k8s_namespace}/x", "read,delete", "write"),
        ("DELETE", f"/api/v1/resources/ConfigMap/{k8s_namespace}/x", "read,write", "delete"),
    ]
    for method, path, granted, required in cases:
        body = expect_error(
            api(method, path, body=configmap("x", k8s_namespace), token=mint(scopes=granted)),
            403,
            "insufficient_scope",
        )
        assert body["details"]["required_scope"] == required, method
    # admin implies every scope
    admin = mint(scopes="admin", token_type="admin")
    status, _, _ = api(
        "POST", "/api/v1/resources/ConfigMap", body=configmap("by-admin", k8s_namespace), token=admin
    )
    assert status == 201
    status, _, _ = api("DELETE", f"/api/v1/resources/ConfigMap/{k8s_namespace}/by-admin", token=admin)
    assert status == 200


def test_writes_are_limited_to_50_a_minute_plus_the_burst(api, mint, k8s_namespace):
    token = mint(sub="writer", scopes="write")
    statuses = [
        api(
            "POST",
            "/api/v1/resources/ConfigMap",
            {"validate_only": "true"},
            configmap("w", k8s_namespace),
            token=token,
        )[0]
        for _ in range(71)
    ]
    assert statuses[:70] == [201] * 70 and statuses[70] == 429
