"""ConfigMaps and Secrets a pod refers to that do not exist, or lack the key it asks for.

The kubelet reports these as CreateContainerConfigError (env / envFrom) or as FailedMount events
(volumes); the evidence says which ConfigMaps and Secrets exist and which keys they hold (never the
values), which both confirms the kubelet's message and finds the problem when it has not spoken yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kubilitics.ai.analyzers._common import (
    container_events,
    describe,
    is_recent,
    outage_severity,
    workload_ref,
)
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_absent, cite_event, cite_field
from kubilitics.ai.kube_json import containers, name_of, namespace_of, pod_finished

MISSING_OBJECT = re.compile(r'\b(configmap|secret)s? "([^"]+)" not found', re.IGNORECASE)
MISSING_KEY = re.compile(r"couldn't find key (\S+) in (ConfigMap|Secret) (?:([^/\s]+)/)?(\S+)", re.IGNORECASE)


@dataclass
class _Ref:
    """One reference of a pod spec to a ConfigMap or Secret (a key, or the whole object)."""

    kind: str  # ConfigMap | Secret
    name: str
    key: str | None
    optional: bool
    where: str  # the JSON path that refers to it


def analyze(ev: Evidence) -> list[Finding]:
    findings: dict[tuple[str, str, str, str | None], Finding] = {}
    for pod in ev.pods:
        if pod_finished(pod):
            continue
        reported = _reported(ev, pod)
        for kind, name, key, cites in reported:
            _add(findings, ev, pod, kind, name, key, cites, confidence=0.95)
        # What the spec refers to and the evidence shows missing, whether or not the kubelet said so yet.
        started = all(c.running or c.terminated or c.last_terminated for c in containers(pod))
        for ref in _references(pod):
            if ref.optional or started:
                continue
            ns = namespace_of(pod)
            obj = ev.get(ref.kind, ref.name, ns)
            if obj is None and ev.is_absent(ref.kind, ref.name, ns):
                cites = [cite_field(pod, ref.where, ref.name), cite_absent(ObjectRef(ref.kind, ref.name, ns))]
                _add(findings, ev, pod, ref.kind, ref.name, None, cites, confidence=0.75)
            elif obj is not None and ref.key and ref.key not in (obj.get("keys") or []):
                cites = [
                    cite_field(pod, ref.where, ref.key),
                    cite_field(obj, "keys", ", ".join(obj.get("keys") or []) or "(none)"),
                ]
                _add(findings, ev, pod, ref.kind, ref.name, ref.key, cites, confidence=0.75)
    return list(findings.values())


def _reported(ev: Evidence, pod: dict[str, Any]) -> list[tuple[str, str, str | None, list[Citation]]]:
    """(kind, name, key, citations) for every missing reference the kubelet reported."""
    out = []
    for c in containers(pod):
        waiting = c.waiting
        texts: list[tuple[str, Citation]] = []
        if waiting.get("reason") in ("CreateContainerConfigError", "CreateContainerError"):
            texts.append(
                (
                    str(waiting.get("message") or ""),
                    cite_field(
                        pod,
                        f"{c.status_path}.state.waiting",
                        f"{waiting.get('reason')}: {waiting.get('message') or ''}",
                    ),
                )
            )
        for event in container_events(ev, pod, c.name, reason="Failed"):
            if is_recent(ev, event, 900) and (
                MISSING_OBJECT.search(str(event.get("message")))
                or MISSING_KEY.search(str(event.get("message")))
            ):
                texts.append((str(event.get("message")), cite_event(event)))
                break
        out += _parse(texts)
    still_creating = any(
        c.waiting.get("reason") in ("ContainerCreating", "PodInitializing") for c in containers(pod)
    )
    if still_creating:
        mounts = [e for e in ev.events_for(pod, reason="FailedMount") if is_recent(ev, e, 900)]
        out += _parse([(str(e.get("message")), cite_event(e)) for e in mounts[:1]])
    return out


def _parse(texts: list[tuple[str, Citation]]) -> list[tuple[str, str, str | None, list[Citation]]]:
    found: dict[tuple[str, str, str | None], list[Citation]] = {}
    for text, cite in texts:
        m = MISSING_KEY.search(text)
        if m:
            kind = "ConfigMap" if m.group(2).lower() == "configmap" else "Secret"
            found.setdefault((kind, m.group(4), m.group(1)), []).append(cite)
            continue
        m = MISSING_OBJECT.search(text)
        if m:
            kind = "ConfigMap" if m.group(1).lower() == "configmap" else "Secret"
            found.setdefault((kind, m.group(2), None), []).append(cite)
    return [(k, n, key, cites) for (k, n, key), cites in found.items()]


def _add(
    findings: dict[tuple[str, str, str, str | None], Finding],
    ev: Evidence,
    pod: dict[str, Any],
    kind: str,
    name: str,
    key: str | None,
    cites: list[Citation],
    *,
    confidence: float,
) -> None:
    ns = namespace_of(pod)
    wref = workload_ref(ev, pod)
    ident = (str(wref), kind, name, key)
    obj = ev.get(kind, name, ns)
    # The kubelet's word plus the evidence agreeing (absent object / key not in the key list): certain.
    if key is None and ev.is_absent(kind, name, ns):
        confidence = max(confidence, 0.97)
        cites = [*cites, cite_absent(ObjectRef(kind, name, ns))]
    elif key is not None and obj is not None and key not in (obj.get("keys") or []):
        confidence = max(confidence, 0.97)
    elif key is None and obj is not None:
        confidence = min(confidence, 0.6)  # it exists now: the error is probably about to clear
    if ident in findings:
        f = findings[ident]
        f.confidence = max(f.confidence, confidence)
        f.citations.extend(c for c in cites if c not in f.citations)
        return
    needed = sorted({r.key for r in _references(pod) if r.kind == kind and r.name == name and r.key})
    noun = "Secret" if kind == "Secret" else "ConfigMap"
    if key is None:
        category = "missing_secret" if kind == "Secret" else "missing_configmap"
        keys = f" with key(s) {', '.join(needed)}" if needed else ""
        summary = (
            f"{describe(wref)} refers to {noun} {name}, which does not exist in namespace {ns}, so pod "
            f"{name_of(pod)} cannot start its containers."
        )
        create = (
            f"kubectl create secret generic {name} -n {ns} "
            + " ".join(f"--from-literal={k}=..." for k in needed)
            if kind == "Secret"
            else f"kubectl create configmap {name} -n {ns} "
            + " ".join(f"--from-literal={k}=..." for k in needed)
        )
        rec = Recommendation(
            f"create_{kind.lower()}",
            f"Create {noun} {name} in namespace {ns}{keys} ({create.strip()}), or fix the name referenced by "
            f"{describe(wref)}.",
            ObjectRef(kind, name, ns),
        )
    else:
        category = "missing_secret_key" if kind == "Secret" else "missing_configmap_key"
        has = ", ".join(obj.get("keys") or []) if obj else ""
        summary = (
            f"{describe(wref)} reads key {key} of {noun} {name}, which has no such key"
            f"{f' (it has: {has})' if has else ''}, so pod {name_of(pod)} cannot start its containers."
        )
        rec = Recommendation(
            f"add_{kind.lower()}_key",
            f"Add key {key} to {noun} {name} in namespace {ns}, or change the key {describe(wref)} reads to "
            "one "
            f"that exists{f' ({has})' if has else ''}.",
            ObjectRef(kind, name, ns),
        )
    findings[ident] = Finding(
        category=category,
        summary=summary,
        confidence=confidence,
        severity=outage_severity(ev),
        subject=wref,
        citations=list(cites),
        recommendations=[rec],
    )


def _references(pod: dict[str, Any]) -> list[_Ref]:
    spec = pod.get("spec") or {}
    out: list[_Ref] = []
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            base = f"spec.{group}[{c.get('name')}]"
            for i, src in enumerate(c.get("envFrom") or []):
                for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    ref = src.get(field)
                    if ref and ref.get("name"):
                        out.append(
                            _Ref(
                                kind,
                                ref["name"],
                                None,
                                bool(ref.get("optional")),
                                f"{base}.envFrom[{i}].{field}.name",
                            )
                        )
            for env in c.get("env") or []:
                value_from = env.get("valueFrom") or {}
                for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    ref = value_from.get(field)
                    if ref and ref.get("name"):
                        out.append(
                            _Ref(
                                kind,
                                ref["name"],
                                ref.get("key"),
                                bool(ref.get("optional")),
                                f"{base}.env[{env.get('name')}].valueFrom.{field}",
                            )
                        )
    for vol in spec.get("volumes") or []:
        where = f"spec.volumes[{vol.get('name')}]"
        if (vol.get("configMap") or {}).get("name"):
            src = vol["configMap"]
            out.append(
                _Ref("ConfigMap", src["name"], None, bool(src.get("optional")), f"{where}.configMap.name")
            )
            out += [
                _Ref(
                    "ConfigMap",
                    src["name"],
                    i.get("key"),
                    bool(src.get("optional")),
                    f"{where}.configMap.items",
                )
                for i in src.get("items") or []
                if i.get("key")
            ]
        if (vol.get("secret") or {}).get("secretName"):
            src = vol["secret"]
            out.append(
                _Ref(
                    "Secret", src["secretName"], None, bool(src.get("optional")), f"{where}.secret.secretName"
                )
            )
            out += [
                _Ref(
                    "Secret",
                    src["secretName"],
                    i.get("key"),
                    bool(src.get("optional")),
                    f"{where}.secret.items",
                )
                for i in src.get("items") or []
                if i.get("key")
            ]
        for j, source in enumerate((vol.get("projected") or {}).get("sources") or []):
            for field, kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
                src = source.get(field)
                if src and src.get("name"):
                    out.append(
                        _Ref(
                            kind,
                            src["name"],
                            None,
                            bool(src.get("optional")),
                            f"{where}.projected.sources[{j}].{field}.name",
                        )
                    )
    return out


ANALYZER = Analyzer(
    "config_refs",
    ("missing_configmap", "missing_configmap_key", "missing_secret", "missing_secret_key"),
    analyze,
)
