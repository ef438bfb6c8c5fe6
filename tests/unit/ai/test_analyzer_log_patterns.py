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


def _running(evidence, lines: list[str]):
    """The healthy deployment's ready pod, logging `lines`."""
    ev = evidence("healthy-deployment")
    pod = ev.pods[0]
    ev.logs = [LogTail(pod["metadata"]["namespace"], pod["metadata"]["name"], "nginx", lines=tuple(lines))]
    return ev


def test_each_cause_a_running_app_names_in_its_log(evidence):
    cases = {
        "connection_refused": "dial tcp 10.96.14.2:5432: connect: connection refused",
        "dependency_timeout": 'Get "http://pricing:8080/quote": dial tcp 10.96.3.9:8080: i/o timeout',
        "disk_full": "write /data/wal/000123.log: no space left on device",
        "dns_failure": "dial tcp: lookup pricing on 10.96.0.10:53: no such host",
        "certificate_expired": "tls: failed to verify certificate: x509: certificate has expired",
    }
    for category, line in cases.items():
        [finding] = log_patterns.ANALYZER(_running(evidence, [line] * 6))
        assert finding.category == category, line
        assert finding.confidence >= 0.5 and "6 of its last 6 log lines" in finding.summary
        assert finding.citations[-1].value == line


def test_the_address_a_refused_or_timed_out_call_went_to_is_named(evidence):
    [refused] = log_patterns.ANALYZER(_running(evidence, ["connect ECONNREFUSED 10.0.0.7:6379"] * 5))
    assert "'10.0.0.7:6379'" in refused.summary and refused.recommendations[0].action == "check_dependency"
    [slow] = log_patterns.ANALYZER(
        _running(evidence, ["psycopg2.OperationalError: connection to orders-db:5432 timed out"] * 5)
    )
    assert slow.category == "dependency_timeout" and "'orders-db:5432'" in slow.summary


def test_a_line_counts_for_its_first_cause_only(evidence):
    # A lookup that times out is a DNS problem, not a slow dependency.
    [finding] = log_patterns.ANALYZER(
        _running(evidence, ["dial tcp: lookup db on 10.96.0.10:53: i/o timeout"] * 5)
    )
    assert finding.category == "dns_failure"


def test_the_threshold_for_a_ready_container_both_ways(evidence):
    normal = [f"GET /items/{i} 200 2ms" for i in range(50)]
    refused = "dial tcp 10.96.14.2:5432: connect: connection refused"
    # Four lines in eight: too few, however large the share.
    [few] = log_patterns.ANALYZER(_running(evidence, [refused, "ok"] * 4))
    assert few.confidence < 0.5
    # Five lines among 55: enough lines, but fewer than one in ten.
    [rare] = log_patterns.ANALYZER(_running(evidence, normal + [refused] * 5))
    assert rare.confidence < 0.5
    # Five lines among 50 is one in ten: it persists.
    [lasting] = log_patterns.ANALYZER(_running(evidence, normal[:45] + [refused] * 5))
    assert lasting.confidence >= 0.5
    assert log_patterns.persistent(5, 50) and not log_patterns.persistent(5, 51)
    assert not log_patterns.persistent(4, 4)


def test_a_very_long_line_is_judged_on_its_start(evidence):
    line = "x" * 100_000 + " connection refused"
    assert log_patterns.causes([line]) == {}
    assert log_patterns.causes(["connection refused " + "x" * 100_000]) == {
        "connection_refused": ["connection refused " + "x" * 100_000]
    }
