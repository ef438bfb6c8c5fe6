"""Runtime errors the application logs that name their cause: RBAC refusals by the API server,
expired TLS certificates, host names that do not resolve, full disks, dependencies that refuse
connections or do not answer in time.

One line names one cause (the first of `PATTERNS` it matches: "lookup db: i/o timeout" is DNS).
In a failing container (restarting, exited non-zero, not ready) one line is enough. In a container
that runs and is ready, the cause must persist: at least `PERSISTENT_LINES` lines and at least one in
`PERSISTENT_SHARE` of the lines read name it; fewer is only a hint (a few errors among normal output
are what a healthy service logs). Init containers are left to the init analyzer, which quotes their log.
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
CONNECTION_REFUSED = re.compile(
    r"(connection refused|ECONNREFUSED|actively refused|Connection reset by peer|ECONNRESET)", re.IGNORECASE
)
TIMEOUT = re.compile(
    r"(i/o timeout|context deadline exceeded|Client\.Timeout exceeded|ETIMEDOUT|timed out|"
    r"connection timeout|connect timeout|deadline exceeded|timeout exceeded|operation timeout)",
    re.IGNORECASE,
)
DISK_FULL = re.compile(
    r"(no space left on device|ENOSPC|disk quota exceeded|not enough space on the disk|disk is full|"
    r"database or disk is full)",
    re.IGNORECASE,
)
# Where a connection went: "dial tcp 10.0.0.5:5432: connect", "connect to db:5432", "Connection to
# redis:6379 refused", "(host=orders-db, port=5432)".
ENDPOINT = re.compile(
    r"(?:dial tcp |dial udp |connect to |connecting to |Connection to |connect ECONNREFUSED |"
    r"connect ETIMEDOUT |host=)\[?([A-Za-z0-9][A-Za-z0-9.:-]{0,252})",
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


PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("rbac_forbidden", RBAC_LOOSE),
    ("certificate_expired", CERT),
    ("dns_failure", DNS),
    ("disk_full", DISK_FULL),
    ("connection_refused", CONNECTION_REFUSED),
    ("dependency_timeout", TIMEOUT),
)
CATEGORIES = tuple(category for category, _ in PATTERNS)
PERSISTENT_LINES = 5
PERSISTENT_SHARE = 10  # one line in ten
MAX_LINE_CHARS = 4096  # a longer line is judged on its start (bounds the regex work per line)


@dataclass
class _Hit:
    tail: LogTail
    lines: list[str]


def causes(lines: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """The lines that name each cause, in log order; each line counts for its first cause only."""
    out: dict[str, list[str]] = {}
    for line in lines:
        text = line[:MAX_LINE_CHARS]
        for category, pattern in PATTERNS:
            if pattern.search(text) or (category == "rbac_forbidden" and RBAC.search(text)):
                out.setdefault(category, []).append(line)
                break
    return out


def persistent(named: int, read: int) -> bool:
    """Whether a cause named in `named` of `read` log lines is more than a few errors among normal
    output (the threshold for a container that runs and is ready)."""
    return named >= PERSISTENT_LINES and named * PERSISTENT_SHARE >= read


def analyze(ev: Evidence) -> list[Finding]:
    findings: list[Finding] = []
    pods = {(namespace_of(p), name_of(p)): p for p in ev.pods}
    seen: set[tuple[str, str]] = set()
    for tail in ev.logs:
        if tail.init or not tail.lines:
            continue
        pod = pods.get((tail.namespace, tail.pod))
        if pod is None:
            continue
        for category, lines in causes(tail.lines).items():
            finding = _finding(ev, category, pod, _Hit(tail, lines))
            key = (category, str(finding.subject))
            if key in seen:
                continue
            seen.add(key)
            findings.append(finding)
    findings.sort(key=lambda f: CATEGORIES.index(f.category))
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
    lasting = persistent(len(hit.lines), len(hit.tail.lines))
    confidence = 0.9 if failing else (0.75 if lasting else 0.45)
    line = hit.lines[-1]
    cites = [cite_log(hit.tail, x) for x in hit.lines[-2:]]
    where = f"container {hit.tail.container} of {on_pod(wref, pod)}"
    state = (
        "and fails"
        if failing
        else f"while running ({len(hit.lines)} of its last {len(hit.tail.lines)} log lines)"
    )
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
    elif category in ("connection_refused", "dependency_timeout"):
        endpoints = [m.group(1).rstrip(".'\":,)") for x in hit.lines for m in [ENDPOINT.search(x)] if m]
        endpoint = endpoints[-1] if endpoints else None
        target = repr(endpoint) if endpoint else "a service it depends on"
        if category == "connection_refused":
            summary = (
                f"{_capital(where)} cannot connect to {target}: the connection is refused "
                f"({quote(line, 160)!r}); the app logs it {state}."
            )
            details = (
                f"Nothing accepts connections at {target}: check that the Service or host "
                f"{describe(wref)} connects to exists, has ready endpoints (kubectl get endpoints) and "
                "that the port it uses is one its pods listen on; fix the address in the app's "
                "configuration if it is wrong."
            )
            action = "check_dependency"
        else:
            summary = (
                f"{_capital(where)} gets no answer in time from {target} ({quote(line, 160)!r}); the "
                f"app logs it {state}."
            )
            details = (
                f"{target[0].upper() + target[1:]} does not answer in time: check that it runs and is "
                "not overloaded, that no NetworkPolicy drops the traffic between them, and that the "
                "app's timeout suits the call."
            )
            action = "check_network_path"
        rec = Recommendation(action, details, wref)
    elif category == "disk_full":
        summary = f"{_capital(where)} runs out of disk space ({quote(line, 160)!r}); the app logs it {state}."
        rec = Recommendation(
            "free_disk_space",
            f"The volume {describe(wref)} writes to is full: grow the PersistentVolumeClaim (or the "
            "emptyDir sizeLimit / ephemeral-storage limit), delete or rotate what fills it, then "
            "restart the pods.",
            wref,
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


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def _service_account(pod: dict[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("serviceAccountName") or "default")


def _tls_secrets(pod: dict[str, Any]) -> list[str]:
    return [
        str(v["secret"]["secretName"])
        for v in (pod.get("spec") or {}).get("volumes") or []
        if (v.get("secret") or {}).get("secretName")
    ]


ANALYZER = Analyzer("log_patterns", CATEGORIES, analyze)
