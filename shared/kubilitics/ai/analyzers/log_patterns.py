"""Runtime errors the application logs that name their cause: RBAC refusals by the API server,
expired TLS certificates, host names that do not resolve.

A line counts more when the container is failing (restarting, exited non-zero, not ready) and when
it repeats; one line in a container that is otherwise healthy is only a hint. Init containers are
left to the init analyzer, which quotes their log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kubilitics.ai.analyzers._common import describe, on_pod, quote, workload_ref
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, LogTail, ObjectRef
from kubilitics.ai.findings import Finding, Recommendation, cite_log
from kubilitics.ai.kube_json import containers, name_of, namespace_of

# Quotes may come escaped (\") when the line is itself a quoted log field (klog, JSON loggers).
_Q = r'\\?"'
RBAC = re.compile(
    rf"(?:is forbidden|forbidden): User {_Q}(?P<user>[^\"\\]+){_Q} cannot (?P<verb>[\w-]+) resource "
    rf"{_Q}(?P<resource>[^\"\\]+){_Q}"
    rf"(?: in API group {_Q}(?P<group>[^\"\\]*){_Q})?(?: in the namespace {_Q}(?P<ns>[^\"\\]+){_Q}| at the "
    r"cluster scope)?",
    re.IGNORECASE,
)
RBAC_LOOSE = re.compile(
    r"(forbidden.*system:serviceaccount:|system:serviceaccount:\S+ cannot|RBAC: access denied)", re.IGNORECASE
)
CERT = re.compile(
    r"(x509: certificate has expired|certificate has expired|certificate is not yet valid|CERT_HAS_EXPIRED|"
    r"certificate verify failed: certificate has expired|NotAfter: |validity check failed|"
    r"SSL certificate problem: certificate has expired|tls: expired certificate)",
    re.IGNORECASE,
)
DNS = re.compile(
    r"(no such host|server misbehaving|temporary failure in name resolution|name or service not known|"
    r"getaddrinfo (?:ENOTFOUND|EAI_AGAIN)|NXDOMAIN|could not resolve host|UnknownHostException|bad address '|"
    r"nodename nor servname provided|can't resolve|Name does not resolve|failed to resolve|dial tcp: lookup "
    r")",
    re.IGNORECASE,
)
HOST = re.compile(
    r"(?:lookup |bad address '|could not resolve host: |ENOTFOUND |can't find |can't resolve '?|"
    r"UnknownHostException: |resolve host |getaddrinfo \w+ )([A-Za-z0-9][A-Za-z0-9.-]*)"
)


@dataclass
class _Hit:
    tail: LogTail
    lines: list[str]


def analyze(ev: Evidence) -> list[Finding]:
    findings: list[Finding] = []
    pods = {(namespace_of(p), name_of(p)): p for p in ev.pods}
    for category, pattern in (
        ("rbac_forbidden", RBAC_LOOSE),
        ("certificate_expired", CERT),
        ("dns_failure", DNS),
    ):
        seen: set[str] = set()
        for tail in ev.logs:
            if tail.init or not tail.lines:
                continue
            pod = pods.get((tail.namespace, tail.pod))
            if pod is None:
                continue
            if category == "rbac_forbidden":
                lines = [line for line in tail.lines if RBAC.search(line) or pattern.search(line)]
            else:
                lines = [line for line in tail.lines if pattern.search(line)]
            if not lines:
                continue
            finding = _finding(ev, category, pod, _Hit(tail, lines))
            key = str(finding.subject)
            if key in seen:
                continue
            seen.add(key)
            findings.append(finding)
    return findings


def _failing(pod: dict[str, Any], container: str) -> bool:
    for c in containers(pod):
        if c.name != container:
            continue
        term, _ = c.recent_termination()
        return bool(
            c.restarts > 0
            or c.waiting.get("reason") == "CrashLoopBackOff"
            or (term and term.get("exitCode"))
            or (c.running and not c.ready)
        )
    return False


def _finding(ev: Evidence, category: str, pod: dict[str, Any], hit: _Hit) -> Finding:
    wref = workload_ref(ev, pod)
    failing = _failing(pod, hit.tail.container)
    repeated = len(hit.lines) >= 2
    confidence = 0.9 if failing else (0.7 if repeated else 0.45)
    line = hit.lines[-1]
    cites = [cite_log(hit.tail, x) for x in hit.lines[-2:]]
    where = f"container {hit.tail.container} of {on_pod(wref, pod)}"
    state = "and fails" if failing else "while running"
    if category == "rbac_forbidden":
        m = RBAC.search(" ".join(hit.lines))
        user = m.group("user") if m else _service_account(pod)
        verb, resource = (m.group("verb"), m.group("resource")) if m else ("?", "?")
        group = (m.group("group") or "") if m else ""
        scope = (m.group("ns") if m else None) or namespace_of(pod)
        sa = user.split(":")[-1] if user.startswith("system:serviceaccount:") else _service_account(pod)
        summary = (
            f"The Kubernetes API refuses {where}: {user} may not {verb} {resource}"
            f"{f' in namespace {scope}' if scope else ''} ({quote(line, 160)!r}); the app logs it {state}."
        )
        rule = f'apiGroups: ["{group}"], resources: ["{resource}"], verbs: ["{verb}"]'
        rec = Recommendation(
            "grant_rbac_permission",
            f"Give ServiceAccount {sa} the permission it needs: a Role in namespace {scope} with rule "
            f"{{{rule}}} and a "
            f"RoleBinding of that Role to {sa} (kubectl create role "
            f"{wref.name}-{verb}-{resource.split('/')[0]} "
            f"--verb={verb} --resource={resource}{'.' + group if group else ''} -n {scope}; kubectl create "
            "rolebinding ... "
            f"--serviceaccount={namespace_of(pod)}:{sa}).",
            ObjectRef("ServiceAccount", sa, namespace_of(pod)),
        )
    elif category == "certificate_expired":
        secrets = _tls_secrets(pod)
        summary = f"A TLS certificate has expired for {where}: {quote(line, 180)!r}; the app logs it {state}."
        rec = Recommendation(
            "renew_certificate",
            "Renew the expired certificate"
            + (
                f" in Secret {', '.join(secrets)} (mounted by the pod) and restart the pods"
                if secrets
                else " of the server the application connects to (or the one it serves), then restart "
                "the pods"
            )
            + "; if cert-manager issues it, check the Certificate's renewal.",
            ObjectRef("Secret", secrets[0], namespace_of(pod)) if secrets else wref,
        )
    else:
        hosts = [m.group(1).rstrip(".'\":") for x in hit.lines for m in [HOST.search(x)] if m]
        host = hosts[-1] if hosts else None
        summary = (
            f"{where[0].upper() + where[1:]} cannot resolve "
            f"{('host ' + repr(host)) if host else 'a host name'} ({quote(line, 160)!r}); the app logs it "
            f"{state}."
        )
        rec = Recommendation(
            "fix_hostname",
            f"Check the host name {repr(host) if host else ''} that {describe(wref)} connects to: a Service "
            "of that "
            "name must exist in the namespace it looks in (<service>.<namespace>.svc.cluster.local), or "
            "the external "
            "name must exist in DNS; fix the typo in the app's configuration (env/ConfigMap) if it is one.",
            wref,
        )
    return Finding(
        category=category,
        summary=summary,
        confidence=confidence,
        severity="high" if failing else "medium",
        subject=wref,
        citations=cites,
        recommendations=[rec],
    )


def _service_account(pod: dict[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("serviceAccountName") or "default")


def _tls_secrets(pod: dict[str, Any]) -> list[str]:
    return [
        str(v["secret"]["secretName"])
        for v in (pod.get("spec") or {}).get("volumes") or []
        if (v.get("secret") or {}).get("secretName")
    ]


ANALYZER = Analyzer("log_patterns", ("rbac_forbidden", "certificate_expired", "dns_failure"), analyze)
