"""The cluster triage's roll-up (ai/cluster_triage.py diagnose_cluster) on documents built here."""

from __future__ import annotations

import time

from kubilitics.ai.cluster_triage import SCOPE, diagnose_cluster


def document(**parts) -> dict:
    return {
        "scope": SCOPE,
        "target": {"kind": "Cluster", "name": "prod"},
        "collected_at": time.time(),
        "window_minutes": 60,
        "nodes": [],
        "node_pods": [],
        "pending": [],
        "readyz": {"read": True, "ok": ["ping", "etcd"], "failed": []},
        "namespaces": [],
        "counts": {"nodes": 0, "namespaces": 3, "pods": 0, "workloads": 0},
        "notes": [],
        **parts,
    }


def test_an_api_server_failing_its_readiness_checks_is_the_root_cause():
    readyz = {"read": True, "ok": ["ping"], "failed": ["etcd", "informer-sync"]}
    result = diagnose_cluster(document(readyz=readyz))
    root = result["root_cause"]
    assert root["category"] == "apiserver_not_ready", root
    assert root["summary"] == "The API server is not ready: etcd, informer-sync."
    assert result["severity"] == "critical"
    assert [e["value"] for e in result["evidence"]][:2] == ["[-]etcd", "[-]informer-sync"]


def test_a_cluster_with_nothing_broken_is_healthy_and_says_what_was_read():
    result = diagnose_cluster(document())
    assert result["root_cause"]["category"] == "healthy", result["root_cause"]
    assert result["findings"] == []


def test_readiness_checks_that_could_not_be_read_are_a_note_not_a_cause():
    result = diagnose_cluster(document(readyz={"read": False, "error": "403 forbidden"}))
    assert result["root_cause"]["category"] == "healthy"
    assert any("readiness checks could not be read" in n for n in result["notes"])
