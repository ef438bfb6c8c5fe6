"""What a remediation changes, how it is undone, and how a workload is judged after it (no I/O)."""

from __future__ import annotations

import copy

from kubilitics.ai import remediation


def deployment(limit: str = "256Mi", image: str = "ghcr.io/acme/worker:1.1", **status) -> dict:
    return {
        "kind": "Deployment",
        "metadata": {
            "name": "worker",
            "namespace": "shop",
            "uid": "d-1",
            "generation": 4,
            "annotations": {"deployment.kubernetes.io/revision": "3"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "worker"}},
            "template": {
                "metadata": {"labels": {"app": "worker"}},
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "image": image,
                            "resources": {"limits": {"memory": limit}, "requests": {"cpu": "10m"}},
                        },
                        {"name": "sidecar", "image": "envoy:1.30"},
                    ]
                },
            },
        },
        "status": {"observedGeneration": 4, **status},
    }


def after(obj: dict, mutate) -> dict:
    changed = copy.deepcopy(obj)
    mutate(changed)
    return changed


def containers(obj: dict) -> list:
    return obj["spec"]["template"]["spec"]["containers"]


def test_changes_are_what_the_dry_run_would_store_keyed_by_container_name():
    live = deployment()
    dry = after(live, lambda d: containers(d)[0]["resources"]["limits"].update(memory="512Mi"))
    changes = remediation.object_changes(live, dry)
    assert remediation.changes_view(changes) == {
        "spec.template.spec.containers[worker].resources.limits.memory": {
            "current": "256Mi",
            "proposed": "512Mi",
        }
    }
    assert changes[0]["path"] == [
        "spec",
        "template",
        "spec",
        "containers",
        {"name": "worker"},
        "resources",
        "limits",
        "memory",
    ]


def test_annotations_with_dots_are_quoted_and_unchanged_objects_have_no_changes():
    live = deployment()
    dry = after(
        live,
        lambda d: d["spec"]["template"]["metadata"].update(
            annotations={"kubectl.kubernetes.io/restartedAt": "2026-02-10T14:25:00Z"}
        ),
    )
    view = remediation.changes_view(remediation.object_changes(live, dry))
    assert view == {
        'spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]': {
            "current": None,
            "proposed": "2026-02-10T14:25:00Z",
        }
    }
    assert remediation.object_changes(live, copy.deepcopy(live)) == []


def test_the_undo_patch_restores_every_changed_value():
    live = deployment()

    def mutate(d):
        containers(d)[0]["image"] = "ghcr.io/acme/worker:1.0"
        containers(d)[0]["resources"]["requests"]["memory"] = "128Mi"  # added
        containers(d).pop(1)  # removed
        containers(d).append({"name": "debug", "image": "busybox"})  # added
        d["spec"]["replicas"] = 3

    changes = remediation.object_changes(live, after(live, mutate))
    undo = remediation.undo_patch(changes)
    assert undo["spec"]["replicas"] == 2
    by_name = {c["name"]: c for c in undo["spec"]["template"]["spec"]["containers"]}
    assert by_name["worker"]["image"] == "ghcr.io/acme/worker:1.1"
    assert by_name["worker"]["resources"]["requests"]["memory"] is None  # null removes it
    assert by_name["sidecar"] == {"name": "sidecar", "image": "envoy:1.30"}  # put back whole
    assert by_name["debug"] == {"name": "debug", "$patch": "delete"}


def test_values_are_read_back_by_their_structured_path_and_quantities_compare_by_amount():
    live = deployment(limit="1Gi")
    path = ["spec", "template", "spec", "containers", {"name": "worker"}, "resources", "limits", "memory"]
    assert remediation.read_path(live, path) == "1Gi"
    assert remediation.same("1Gi", "1024Mi") and not remediation.same("1Gi", "512Mi")
    assert remediation.same(8080, "8080")
    assert (
        remediation.read_path(live, ["spec", "template", "spec", "containers", {"name": "nope"}, "image"])
        is None
    )


def test_the_fingerprint_follows_the_spec_not_the_status():
    live = deployment()
    assert remediation.fingerprint(live) == remediation.fingerprint(
        after(live, lambda d: d["status"].update(replicas=9))
    )
    assert remediation.fingerprint(live) != remediation.fingerprint(deployment(image="x:2"))


def test_the_previous_replica_set_is_the_revision_before_the_current_one():
    dep = deployment()

    def rs(name, revision, owner="d-1"):
        return {
            "metadata": {
                "name": name,
                "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                "ownerReferences": [{"uid": owner, "controller": True}],
            },
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": "worker", "pod-template-hash": "abc"}},
                    "spec": {"containers": [{"name": "worker", "image": f"w:{revision}"}]},
                }
            },
        }

    chosen = remediation.previous_replica_set(
        dep, [rs("w-1", 1), rs("w-3", 3), rs("w-2", 2), rs("x", 2, "other")]
    )
    assert chosen["metadata"]["name"] == "w-2"
    template = remediation.rollback_template(chosen)
    assert template["metadata"]["labels"] == {"app": "worker"}  # the hash label is the ReplicaSet's own
    assert remediation.previous_replica_set(dep, [rs("w-3", 3)]) is None


def test_rollout_state_of_a_deployment():
    progressing = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
    dep = deployment(updatedReplicas=1, availableReplicas=1, replicas=3, conditions=[progressing])
    assert remediation.rollout_state(dep)[0] == "progressing"
    done = deployment(updatedReplicas=2, availableReplicas=2, replicas=2, conditions=[progressing])
    assert remediation.rollout_state(done) == ("complete", "2/2 updated replicas available")
    stuck = deployment(
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet has timed out progressing.",
            }
        ]
    )
    assert remediation.rollout_state(stuck)[0] == "failed"
    unseen = after(done, lambda d: d["metadata"].update(generation=5))
    assert remediation.rollout_state(unseen)[0] == "pending"


def test_a_pod_fails_when_a_container_cannot_start_restarts_or_the_pod_cannot_be_placed():
    def pod(**status):
        return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}, "status": status}

    ok = pod(containerStatuses=[{"name": "app", "ready": True, "restartCount": 0, "state": {"running": {}}}])
    assert remediation.pod_failure(ok) is None
    oom = pod(
        containerStatuses=[
            {
                "name": "app",
                "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            }
        ]
    )
    assert "OOMKilled 137" in remediation.pod_failure(oom)
    pull = pod(
        containerStatuses=[
            {"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}}
        ]
    )
    assert "ErrImagePull" in remediation.pod_failure(pull)
    pending = pod(
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available",
            }
        ]
    )
    assert "cannot be scheduled" in remediation.pod_failure(pending)
