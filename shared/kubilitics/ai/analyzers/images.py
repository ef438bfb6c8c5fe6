"""Image pulls: a tag or repository that does not exist, a registry that wants credentials, a
reference that cannot be parsed, pull policy Never without the image on the node."""

from __future__ import annotations

import re
from typing import Any

from kubilitics.ai.analyzers._common import (
    container_events,
    container_patch,
    describe,
    is_recent,
    outage_severity,
    quote,
    workload_of,
)
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_absent, cite_event, cite_field
from kubilitics.ai.kube_json import ContainerView, containers, meta, namespace_of, pod_template

PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")
AUTH = re.compile(
    r"(401 unauthorized|unauthorized|authentication required|no basic auth credentials|403 forbidden|"
    r"requested access to the resource is denied|failed to authorize|authorization failed|"
    r"insufficient_scope|denied:)",
    re.IGNORECASE,
)
NOT_FOUND = re.compile(
    r"(: not found|manifest unknown|manifest for .* not found|name unknown|notfound|"
    r"repository does not exist|not found: manifest)",
    re.IGNORECASE,
)
AMBIGUOUS_DENIED = re.compile(r"pull access denied", re.IGNORECASE)
UNREACHABLE = re.compile(
    r"(no such host|i/o timeout|connection refused|network is unreachable)", re.IGNORECASE
)


def analyze(ev: Evidence) -> list[Finding]:
    findings: dict[tuple[str, str], Finding] = {}
    for pod in ev.pods:
        for c in containers(pod):
            finding = _container(ev, pod, c)
            if finding is None:
                continue
            key = (str(finding.subject), c.name)
            if key in findings:  # another replica with the same image: one finding, more evidence
                findings[key].citations.extend(finding.citations[:1])
            else:
                findings[key] = finding
    return list(findings.values())


def _container(ev: Evidence, pod: dict[str, Any], c: ContainerView) -> Finding | None:
    reason = c.waiting.get("reason", "")
    message = str(c.waiting.get("message") or "")
    if c.running or (c.terminated and not reason):
        return None  # the image was pulled; old pull errors no longer matter
    workload = workload_of(ev, pod)
    wref = ObjectRef.of(workload)
    image = str(c.spec.get("image") or "")
    base = [cite_field(pod, f"{c.status_path}.state.waiting.reason", reason)] if reason else []
    if reason == "InvalidImageName" or _events(ev, pod, c, "InspectFailed"):
        events = _events(ev, pod, c, "InspectFailed")
        return Finding(
            category="invalid_image_name",
            summary=(
                f"The image reference {image!r} of container {c.name} in {describe(wref)} cannot be "
                f"parsed ({quote(message or _msg(events), 120)}), so the container is never created."
            ),
            confidence=0.97 if reason == "InvalidImageName" else 0.85,
            severity=outage_severity(ev),
            subject=wref,
            citations=[*base, *_msg_cite(pod, c, message), *map(cite_event, events[:1])],
            recommendations=[
                Recommendation(
                    "fix_image_reference",
                    f"Set container {c.name} of {describe(wref)} to a valid image reference "
                    "(registry/repository:tag, "
                    f"lowercase repository, tag of letters, digits, '.', '_' or '-'); {image!r} is not one.",
                    wref,
                )
            ],
        )
    if reason == "ErrImageNeverPull" or _events(ev, pod, c, "ErrImageNeverPull"):
        events = _events(ev, pod, c, "ErrImageNeverPull")
        return Finding(
            category="image_never_pull",
            summary=(
                f"Container {c.name} of {describe(wref)} has imagePullPolicy Never and image {image} is not "
                f"present on node {pod.get('spec', {}).get('nodeName')}, so it is never started."
            ),
            confidence=0.97,
            severity=outage_severity(ev),
            subject=wref,
            citations=[
                *base,
                cite_field(pod, f"{c.spec_path}.imagePullPolicy", c.spec.get("imagePullPolicy")),
                *map(cite_event, events[:1]),
            ],
            recommendations=[
                Recommendation(
                    "set_image_pull_policy",
                    f"Set imagePullPolicy of container {c.name} in {describe(wref)} to IfNotPresent so the "
                    "node pulls "
                    f"{image}, or pre-load the image on every node.",
                    wref,
                    container_patch(wref.kind, c, {"imagePullPolicy": "IfNotPresent"}),
                )
            ],
        )
    pull_events = [
        e
        for e in container_events(ev, pod, c.name, reason="Failed")
        if "ailed to pull image" in str(e.get("message")) and is_recent(ev, e, 900)
    ]
    if reason not in PULL_REASONS and not pull_events:
        return None
    error = _pull_error(message, pull_events)
    return _classify(ev, pod, workload, c, image, error, [*base, *_msg_cite(pod, c, message)], pull_events)


def _classify(
    ev: Evidence,
    pod: dict[str, Any],
    workload: dict[str, Any],
    c: ContainerView,
    image: str,
    error: str,
    citations: list[Citation],
    events: list[dict[str, Any]],
) -> Finding:
    wref = ObjectRef.of(workload)
    citations = citations + [cite_event(e) for e in events[:1]]
    pull_secrets = _pull_secrets(ev, pod)
    missing_secrets = [s for s in pull_secrets if ev.is_absent("Secret", s, namespace_of(pod))]
    host, repo = _registry_of(image)
    where = f"{describe(wref)} (container {c.name})"
    kind = _kind_of_error(error)
    # Docker Hub answers "pull access denied" both for private and for missing repositories: an
    # official image (no organisation) is public, so it is missing; with an organisation in the name
    # a private repository without credentials is the likelier case.
    if kind == "auth" or (kind == "denied" and "/" in repo):
        confidence = 0.95 if kind == "auth" else 0.55
        if missing_secrets:
            citations += [
                cite_absent(ObjectRef("Secret", s, namespace_of(pod)), "imagePullSecret does not exist")
                for s in missing_secrets
            ]
            advice = (
                f"Create the docker-registry Secret {missing_secrets[0]} with credentials for {host} "
                f"(kubectl create secret docker-registry {missing_secrets[0]} --docker-server={host} ...)."
            )
            summary_tail = f"the imagePullSecret {missing_secrets[0]} it names does not exist"
        elif pull_secrets:
            advice = (
                f"The pull secret(s) {', '.join(pull_secrets)} do not grant access to {host}/{repo}: update "
                f"them with valid credentials for {host}."
            )
            summary_tail = f"its pull secret(s) {', '.join(pull_secrets)} are refused"
        else:
            advice = (
                f"Create a docker-registry Secret with credentials for {host} and add it to "
                f"spec.template.spec.imagePullSecrets of {describe(wref)} (or to its ServiceAccount)."
            )
            summary_tail = "the pod has no imagePullSecret for it"
        return Finding(
            category="image_pull_auth",
            summary=(
                f"The registry {host} refuses to serve image {image} to {where} without valid credentials "
                f"({quote(_essence(error), 110)}); {summary_tail}."
            ),
            confidence=confidence,
            severity=outage_severity(ev),
            subject=wref,
            citations=citations,
            recommendations=[Recommendation("add_image_pull_secret", advice, wref)],
        )
    if kind in ("not_found", "denied", "unreachable"):
        if kind == "not_found":
            confidence, why = 0.95, f"{host} has no {repo}:{_tag(image)}"
        elif kind == "denied":
            confidence, why = 0.75, f"{host} has no repository {repo}"
        else:
            confidence, why = 0.6, f"the registry host {host} cannot be reached or does not exist"
        working = _working_image(ev, workload, c)
        if working and working != image:
            advice = (
                f"Set the image of container {c.name} in {describe(wref)} back to {working} (the last "
                f"revision that ran), or to a tag that exists in {host}/{repo}."
            )
            patch = container_patch(wref.kind, c, {"image": working})
        else:
            advice = (
                f"Set the image of container {c.name} in {describe(wref)} to a tag that exists in "
                f"{host}/{repo}; {image} does not."
            )
            patch = None
        return Finding(
            category="image_not_found",
            summary=f"Image {image} of {where} cannot be pulled: {why} ({quote(_essence(error), 110)}).",
            confidence=confidence,
            severity=outage_severity(ev),
            subject=wref,
            citations=citations,
            recommendations=[Recommendation("fix_image_tag", advice, wref, patch)],
        )
    return Finding(
        category="image_not_found",
        summary=f"Image {image} of {where} cannot be pulled: "
        f"{quote(_essence(error) or 'no reason given', 140)}.",
        confidence=0.45,  # a pull failure whose cause the registry did not say
        severity=outage_severity(ev),
        subject=wref,
        citations=citations,
        recommendations=[
            Recommendation(
                "check_image", f"Check that {image} exists and that the nodes can reach {host}.", wref
            )
        ],
    )


def _kind_of_error(error: str) -> str:
    if AMBIGUOUS_DENIED.search(error):
        return "denied"
    if AUTH.search(error):
        return "auth"
    if NOT_FOUND.search(error):
        return "not_found"
    if UNREACHABLE.search(error):
        return "unreachable"
    return ""


def _events(ev: Evidence, pod: dict[str, Any], c: ContainerView, reason: str) -> list[dict[str, Any]]:
    return [e for e in container_events(ev, pod, c.name, reason=reason) if is_recent(ev, e, 900)]


def _msg(events: list[dict[str, Any]]) -> str:
    return str(events[0].get("message") or "") if events else ""


def _msg_cite(pod: dict[str, Any], c: ContainerView, message: str) -> list[Citation]:
    return [cite_field(pod, f"{c.status_path}.state.waiting.message", message)] if message else []


def _pull_error(message: str, events: list[dict[str, Any]]) -> str:
    texts = [message] + [str(e.get("message") or "") for e in events]
    for text in texts:
        if AUTH.search(text) or NOT_FOUND.search(text) or AMBIGUOUS_DENIED.search(text):
            return text
    return next((t for t in texts if t), "")


def _essence(error: str) -> str:
    """The registry's own words at the end of containerd's chain of 'failed to ...: ' prefixes."""
    parts = [
        p.strip()
        for p in re.split(r": (?=failed to |unexpected status|pull access|dial tcp|[a-z0-9.-]+/)", error)
        if p.strip()
    ]
    return parts[-1] if parts else error


def _registry_of(image: str) -> tuple[str, str]:
    name = image.split("@", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", name
    repo = path.rsplit(":", 1)[0] if ":" in path.rsplit("/", 1)[-1] else path
    return host, repo


def _tag(image: str) -> str:
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _pull_secrets(ev: Evidence, pod: dict[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    names = [str(s.get("name")) for s in spec.get("imagePullSecrets") or [] if s.get("name")]
    sa = ev.get("ServiceAccount", spec.get("serviceAccountName") or "default", namespace_of(pod))
    if sa:
        names += [str(s.get("name")) for s in sa.get("imagePullSecrets") or [] if s.get("name")]
    return list(dict.fromkeys(names))


def _working_image(ev: Evidence, workload: dict[str, Any], c: ContainerView) -> str | None:
    """The image the same container ran in another ReplicaSet of the Deployment whose pods were ready."""
    if workload.get("kind") != "Deployment":
        return None
    uid = meta(workload).get("uid")
    best: tuple[int, str] | None = None
    for rs in ev.of_kind("ReplicaSet"):
        if not any(r.get("uid") == uid for r in meta(rs).get("ownerReferences") or []):
            continue
        if not int((rs.get("status") or {}).get("readyReplicas") or 0):
            continue
        revision = int((meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision") or 0)
        for cspec in (pod_template(rs).get("spec") or {}).get("containers") or []:
            if cspec.get("name") == c.name and (best is None or revision > best[0]):
                best = (revision, str(cspec.get("image")))
    return best[1] if best else None


ANALYZER = Analyzer(
    "images", ("image_not_found", "image_pull_auth", "invalid_image_name", "image_never_pull"), analyze
)
