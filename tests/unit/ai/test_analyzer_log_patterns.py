"""log_patterns analyzer: RBAC refusals, expired certificates, names that do not resolve."""

from __future__ import annotations

from kubilitics.ai.analyzers import log_patterns
from kubilitics.ai.evidence import LogTail


def test_rbac_refusal_names_the_verb_resource_and_service_account(evidence):
    [finding] = log_patterns.ANALYZER(evidence("app-forbidden-by-rbac"))
    assert finding.category == "rbac_forbidden"
    assert "may not list pods" in finding.summary
    rec = finding.recommendations[0]
    assert rec.action == "grant_rbac_permission"
    assert (
        rec.target is not None and rec.target.kind == "ServiceAccount" and rec.target.name == "pod-reporter"
    )
    assert 'verbs: ["list"]' in rec.details


def test_expired_certificate(evidence):
    [finding] = log_patterns.ANALYZER(evidence("expired-cert-in-logs"))
    assert finding.category == "certificate_expired"
    assert any(
        c.source == "log" and "x509: certificate has expired" in (c.value or "") for c in finding.citations
    )


def test_unresolvable_host(evidence):
    [finding] = log_patterns.ANALYZER(evidence("dns-lookup-fails"))
    assert finding.category == "dns_failure"
    assert "'inventory-servce'" in finding.summary


def test_one_line_in_a_healthy_container_is_only_a_hint(evidence):
    ev = evidence("healthy-deployment")
    pod = ev.pods[0]
    ev.logs = [
        LogTail(
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            "nginx",
            lines=("dial tcp: lookup metrics.internal: no such host",),
        )
    ]
    [finding] = log_patterns.ANALYZER(ev)
    assert finding.category == "dns_failure" and finding.confidence < 0.5


def test_ordinary_logs(evidence):
    for name in ("healthy-deployment", "crashloop-app-error", "oomkilled-worker", "init-container-fails"):
        assert log_patterns.ANALYZER(evidence(name)) == [], name


def test_client_go_log_line_with_escaped_quotes(evidence):
    ev = evidence("app-forbidden-by-rbac")
    tail = next(t for t in ev.logs if t.lines)
    ns = tail.namespace
    line = (
        'E1125 23:10:00.000000       1 reflector.go:166] "Unhandled Error" err="failed to list *v1.Pod: '
        f'pods is forbidden: User \\"system:serviceaccount:{ns}:pod-reporter\\" cannot watch resource '
        f'\\"pods\\" in API group \\"\\" in the namespace \\"{ns}\\"" logger="UnhandledError"'
    )
    ev.logs = [type(tail)(ns, tail.pod, tail.container, tail.previous, lines=(line, line))]
    [finding] = log_patterns.ANALYZER(ev)
    assert "may not watch pods" in finding.summary
    assert 'verbs: ["watch"]' in finding.recommendations[0].details
