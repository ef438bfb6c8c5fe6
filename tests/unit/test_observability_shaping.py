"""The pure parts of namespaces, events, metrics and topology: quantities, statuses, event times."""

from __future__ import annotations

import pytest
from kubilitics.errors import KubiliticsError
from kubilitics.services.cluster import (
    check_namespace_name,
    check_object_name,
    describe_context,
    is_system_namespace,
)
from kubilitics.services.events import event_item, event_times, is_failure, parse_rfc3339
from kubilitics.services.metrics import node_status
from kubilitics.services.quantities import extreme_quantity, format_cores, parse_quantity, percent
from kubilitics.services.topology import node_role, pod_status


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", 0.25),
        ("2", 2.0),
        ("1.5", 1.5),
        ("16Gi", 16 * 2**30),
        ("300Mi", 300 * 2**20),
        ("129Ki", 129 * 1024),
        ("1e3", 1000.0),
        ("1E3", 1000.0),
        ("249995733n", 0.249995733),
        ("5k", 5000.0),
        ("2E", 2e18),
        ("bogus", None),
        (None, None),
    ],
)
def test_parse_quantity(text, value):
    assert parse_quantity(text) == (pytest.approx(value) if value is not None else None)


def test_formats_and_percentages():
    assert format_cores(0.249995733) == "0.25"
    assert format_cores(8.0) == "8"
    assert format_cores(0.0) == "0"
    assert format_cores(None) is None
    assert percent(0.25, 4) == 6.2
    assert percent(1, 0) is None and percent(None, 4) is None


def test_the_tightest_quota_limit_binds():
    assert extreme_quantity(["10", "5"], smallest=True) == "5"
    assert extreme_quantity(["1Gi", "512Mi"], smallest=True) == "512Mi"
    assert extreme_quantity(["1000Gi"], smallest=True) == "1000Gi"


def test_system_namespaces_and_names():
    assert all(map(is_system_namespace, ["kube-system", "kube-public", "kube-node-lease", "kwok", "kwok-x"]))
    assert not is_system_namespace("default") and not is_system_namespace("kubernetes-dashboard")
    assert check_namespace_name("team-a") == "team-a"
    for bad in ("Team", "a_b", "-a", "a" * 64, "a.b"):
        with pytest.raises(KubiliticsError) as caught:
            check_namespace_name(bad)
        assert caught.value.code == "invalid_parameter"
    assert check_object_name("ip-10-0-0-1.ec2.internal", "node_name")
    with pytest.raises(KubiliticsError):
        check_object_name("a,b=c", "pod_name")  # would smuggle a second field selector


def test_contexts_describe_paths_not_credentials():
    from kubilitics.adapters.kubeconfig import ContextConfig

    ctx = ContextConfig(
        name="prod",
        cluster_name="prod",
        server="https://admin:hunter2@api.example.com:6443",
        user_name="admin",
        cluster={"certificate-authority-data": "Q0E=", "insecure-skip-tls-verify": True},
        user={"client-certificate": "/etc/k/client.crt", "client-key": "/etc/k/client.key", "token": "t0k"},
    )
    described = describe_context(ctx)
    assert described == {
        "name": "prod",
        "cluster": {"name": "prod", "server": "https://api.example.com:6443", "is_insecure": True},
        "user": {"name": "admin", "client_certificate": "/etc/k/client.crt", "auth_method": "token"},
        "namespace": "default",
    }


def test_rfc3339_parameters():
    assert parse_rfc3339("2026-02-10T14:23:45Z", "since_time") == 1770733425
    assert parse_rfc3339("2026-02-10T15:23:45.5+01:00", "since_time") == 1770733425.5
    for bad in (
        "2026-02-10",
        "2026-02-10 14:23:45Z",
        "2026-02-10T14:23:45",
        "1770733425",
        "2026-13-01T00:00:00Z",
    ):
        with pytest.raises(KubiliticsError) as caught:
            parse_rfc3339(bad, "until_time")
        assert caught.value.details["parameter"] == "until_time"


def test_event_times_of_core_and_new_style_events():
    core = {"firstTimestamp": "2026-02-10T13:00:00Z", "lastTimestamp": "2026-02-10T14:23:45Z", "count": 12}
    assert event_times(core) == (1770728400, 1770733425, 12)
    new_style = {
        "eventTime": "2026-02-10T13:00:00.123456Z",
        "series": {"count": 3, "lastObservedTime": "2026-02-10T13:05:00.000001Z"},
        "reportingController": "kubelet",
        "regarding": {"kind": "Pod", "name": "p"},
        "note": "hello",
        "type": "Warning",
        "reason": "BackOff",
    }
    first, last, count = event_times(new_style)
    assert (round(first), round(last), count) == (1770728400, 1770728700, 3)
    item = event_item(new_style)
    assert item["source"] == {"component": "kubelet"} and item["message"] == "hello"
    assert item["involved_object"] == {"kind": "Pod", "name": "p"}
    single = {"metadata": {"creationTimestamp": "2026-02-10T13:00:00Z"}}
    assert event_times(single) == (1770728400, 1770728400, 1)


@pytest.mark.parametrize(
    ("event", "failure"),
    [
        ({"type": "Warning", "reason": "BackOff"}, True),
        ({"type": "Warning", "reason": "FailedScheduling"}, True),
        ({"type": "Warning", "reason": "OOMKilling"}, True),
        ({"type": "Warning", "reason": "Unhealthy"}, True),
        ({"type": "Warning", "reason": "QuotaNearlyFull"}, False),
        ({"type": "Normal", "reason": "Failed"}, False),
    ],
)
def test_error_means_a_warning_about_a_failure(event, failure):
    assert is_failure(event) is failure


def test_pod_status_is_kubectls_status_column():
    def pod(**status):
        return {"metadata": {}, "status": status}

    waiting = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    assert pod_status(pod(phase="Running", containerStatuses=[waiting])) == "CrashLoopBackOff"
    running = {"state": {"running": {}}, "ready": True}
    assert pod_status(pod(phase="Running", containerStatuses=[running])) == "Running"
    init = {"state": {"waiting": {"reason": "PodInitializing"}}}
    assert pod_status(pod(phase="Pending", initContainerStatuses=[init])) == "Init:0/1"
    done = {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}
    assert pod_status(pod(phase="Succeeded", containerStatuses=[done])) == "Completed"
    oom = {"state": {"terminated": {"exitCode": 137}}}
    assert pod_status(pod(phase="Failed", containerStatuses=[oom])) == "ExitCode:137"
    terminating = {"metadata": {"deletionTimestamp": "2026-02-10T13:00:00Z"}, "status": {"phase": "Running"}}
    assert pod_status(terminating) == "Terminating"
    assert pod_status(pod(phase="Failed", reason="Evicted")) == "Evicted"


def test_node_role_and_status():
    def node(labels=None, ready="True", unschedulable=False):
        return {
            "metadata": {"labels": labels or {}},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }

    assert node_role(node()) == "worker"
    assert node_role(node({"node-role.kubernetes.io/master": ""})) == "control-plane"
    assert (
        node_role(node({"node-role.kubernetes.io/infra": "", "node-role.kubernetes.io/gpu": ""}))
        == "gpu,infra"
    )
    assert node_status(node()) == "Ready"
    assert node_status(node(ready="False")) == "NotReady"
    assert node_status(node(ready="Unknown", unschedulable=True)) == "Unknown,SchedulingDisabled"
    assert node_status({"metadata": {}}) == "Unknown"
