"""The pure side of remediation actions: what a change changes, how to undo it, and whether a
workload took it well. No I/O (services/actions.py reads and writes the cluster).

A change is described by the difference between the object as it is and as the API server's dry
run says it would be, so `changes` shows exactly what the server would store (defaults and
normalised quantities included), whatever kind of patch produced it. Paths are kept structured
(`["spec", "template", "spec", "containers", {"name": "app"}, "image"]`: list items by their merge
key) so that verification can read them back and the undo can be written as a strategic-merge patch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from kubilitics.ai.kube_json import condition, containers

# Keys by which Kubernetes merges list items (strategic merge patch): lists of dicts carrying one of
# these in every item are compared item by item; any other list is one value.
MERGE_KEYS = ("name", "containerPort", "port", "mountPath", "devicePath", "ip")

# Waiting reasons of a container that will not get better by itself.
FAILING_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "StartError",
    }
)

Segment = str | dict[str, Any]
Path = list[Segment]


def fingerprint(obj: dict[str, Any]) -> str:
    """What must not have changed between a proposal and its execution: the object's spec."""
    spec = json.dumps(obj.get("spec"), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(spec.encode()).hexdigest()[:20]


def _merge_key(items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in MERGE_KEYS:
        if all(key in i for i in items):
            return key
    return None


def diff(
    current: Any, proposed: Any, path: Path | None = None, *, list_item: bool = False
) -> Iterator[tuple[Path, Any, Any]]:
    """(path, current, proposed) for every leaf that differs. A map that appears or disappears is
    compared key by key (one change per annotation); a list item that does, as a whole."""
    path = path or []
    maps = isinstance(current, dict) and isinstance(proposed, dict)
    one_map = not list_item and {type(current), type(proposed)} == {dict, type(None)}
    if maps or one_map:
        current, proposed = current or {}, proposed or {}
        for key in sorted(set(current) | set(proposed)):
            yield from diff(current.get(key), proposed.get(key), [*path, key])
        return
    if isinstance(current, list) and isinstance(proposed, list):
        key = _merge_key(current + proposed)
        if key is not None:
            before = {i[key]: i for i in current}
            after = {i[key]: i for i in proposed}
            for value in [*before, *(v for v in after if v not in before)]:
                yield from diff(before.get(value), after.get(value), [*path, {key: value}], list_item=True)
            return
    if current != proposed:
        yield path, current, proposed


def object_changes(live: dict[str, Any], dry_run: dict[str, Any]) -> list[dict[str, Any]]:
    """What a change does to an object: its spec, labels and annotations, as the dry run shows it."""
    out = [
        {"path": path, "current": cur, "proposed": prop}
        for path, cur, prop in diff(live.get("spec"), dry_run.get("spec"), ["spec"])
    ]
    for field in ("labels", "annotations"):
        before = (live.get("metadata") or {}).get(field) or {}
        after = (dry_run.get("metadata") or {}).get(field) or {}
        out += [
            {"path": path, "current": cur, "proposed": prop}
            for path, cur, prop in diff(before, after, ["metadata", field])
        ]
    return out


def path_text(path: Path) -> str:
    """`spec.template.spec.containers[app].resources.limits.memory` (the `changes` keys)."""
    text = ""
    for segment in path:
        if isinstance(segment, dict):
            text += f"[{next(iter(segment.values()))}]"
        elif "." in segment or "/" in segment:
            text += f'["{segment}"]'
        else:
            text += f".{segment}" if text else segment
    return text


def changes_view(changes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The reference's `changes`: {path: {current, proposed}}."""
    return {path_text(c["path"]): {"current": c["current"], "proposed": c["proposed"]} for c in changes}


def read_path(obj: Any, path: Path) -> Any:
    current = obj
    for segment in path:
        if isinstance(segment, dict):
            key, value = next(iter(segment.items()))
            items = current if isinstance(current, list) else []
            current = next((i for i in items if isinstance(i, dict) and i.get(key) == value), None)
        else:
            current = current.get(segment) if isinstance(current, dict) else None
        if current is None:
            return None
    return current


def undo_patch(changes: list[dict[str, Any]]) -> dict[str, Any]:
    """A strategic-merge patch that puts every changed path back to its value before the change.

    A list item the change added is removed again (`$patch: delete`); a field it added is set to
    null, which removes it.
    """
    patch: dict[str, Any] = {}
    for change in changes:
        _set(patch, change["path"], change["current"])
    return patch


def _set(node: dict[str, Any], path: Path, value: Any) -> None:
    head, rest = path[0], path[1:]
    assert isinstance(head, str), "a path starts with a field name"
    if not rest:
        node[head] = value
        return
    selector = rest[0]
    if not isinstance(selector, dict):
        _set(node.setdefault(head, {}), rest, value)
        return
    items = node.setdefault(head, [])
    key, wanted = next(iter(selector.items()))
    item = next((it for it in items if it.get(key) == wanted), None)
    if item is None:
        item = {key: wanted}
        items.append(item)
    if len(rest) == 1:  # the whole list item was added or removed by the change
        if value is None:
            item["$patch"] = "delete"
        else:
            item.update(value)
        return
    _set(item, rest[1:], value)


def same(actual: Any, expected: Any) -> bool:
    """The live value is what was applied (quantities compare by amount: "1Gi" == "1024Mi")."""
    if actual == expected:
        return True
    if isinstance(actual, str) and isinstance(expected, str):
        from kubilitics.ai.kube_json import parse_quantity

        a, b = parse_quantity(actual), parse_quantity(expected)
        return a is not None and a == b
    if isinstance(actual, int | str) and isinstance(expected, int | str):
        return str(actual) == str(expected)
    return False


def pod_template_of(workload: dict[str, Any]) -> dict[str, Any] | None:
    spec = workload.get("spec") or {}
    if workload.get("kind") == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    return spec.get("template")


def rollback_template(replica_set: dict[str, Any]) -> dict[str, Any]:
    """A ReplicaSet's pod template as a Deployment template (what `kubectl rollout undo` restores)."""
    template = json.loads(json.dumps((replica_set.get("spec") or {}).get("template") or {}))
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop("pod-template-hash", None)
    return template


def revision(obj: dict[str, Any]) -> int:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get("deployment.kubernetes.io/revision") or 0)
    except ValueError:
        return 0


def previous_replica_set(
    deployment: dict[str, Any], replica_sets: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The Deployment's ReplicaSet of the revision before the current one."""
    uid = (deployment.get("metadata") or {}).get("uid")
    current = revision(deployment)
    owned = [
        rs
        for rs in replica_sets
        if any(r.get("uid") == uid for r in (rs.get("metadata") or {}).get("ownerReferences") or [])
    ]
    older = [rs for rs in owned if 0 < revision(rs) < current]
    return max(older, key=revision) if older else None


# ---- verification ---------------------------------------------------------------------------------


def pod_failure(pod: dict[str, Any]) -> str | None:
    """Why a pod is failing (a container that crashed or cannot start, a pod that cannot be placed)."""
    name = (pod.get("metadata") or {}).get("name")
    scheduled = condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return f"pod {name} cannot be scheduled: {scheduled.get('message', '')}".strip()
    for c in containers(pod):
        reason = c.waiting.get("reason")
        if reason in FAILING_WAITING:
            return f"container {c.name} of pod {name} is {reason}"
        last = c.last_terminated or c.terminated
        if c.restarts > 0 and last:
            return (
                f"container {c.name} of pod {name} restarted {c.restarts} time(s) "
                f"(last: {last.get('reason') or 'exit'} {last.get('exitCode')})"
            )
    return None


def rollout_state(obj: dict[str, Any]) -> tuple[str, str]:
    """('complete' | 'progressing' | 'failed' | 'pending', why) of a workload after a change."""
    kind = obj.get("kind")
    md, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(md.get("generation") or 0):
        return "pending", "the controller has not seen the change yet"
    if kind == "Deployment":
        progressing = condition(obj, "Progressing") or {}
        if progressing.get("status") == "False":
            return "failed", f"{progressing.get('reason')}: {progressing.get('message', '')}"
        want = int(spec.get("replicas", 1))
        updated = int(status.get("updatedReplicas") or 0)
        available = int(status.get("availableReplicas") or 0)
        total = int(status.get("replicas") or 0)
        if updated >= want and available >= want and total <= want:
            return "complete", f"{updated}/{want} updated replicas available"
        return "progressing", f"{updated}/{want} updated, {available} available"
    if kind == "StatefulSet":
        want = int(spec.get("replicas", 1))
        if int(status.get("updatedReplicas") or 0) >= want and int(status.get("readyReplicas") or 0) >= want:
            return "complete", f"{want} replica(s) updated and ready"
        return "progressing", f"{status.get('updatedReplicas', 0)}/{want} updated"
    if kind == "DaemonSet":
        want = int(status.get("desiredNumberScheduled") or 0)
        if (
            int(status.get("updatedNumberScheduled") or 0) >= want
            and int(status.get("numberAvailable") or 0) >= want
        ):
            return "complete", f"{want} pod(s) updated and available"
        return "progressing", f"{status.get('updatedNumberScheduled', 0)}/{want} updated"
    return "complete", "no rollout to follow"
