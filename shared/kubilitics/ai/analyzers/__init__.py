"""The rule-based analyzers: one module per concern, each a pure function of the evidence.

Every analyzer reads only what Kubernetes reports (status, events, logs, specs, related objects) and
returns findings with citations; together they cover every category of the taxonomy (a unit test
holds that). `run_analyzers` runs them all; an analyzer that raises is reported in the evidence
notes instead of failing the investigation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kubilitics.ai.analyzers import (
    command,
    config_refs,
    crash,
    hpa,
    images,
    init_containers,
    jobs,
    limit_ranges,
    log_patterns,
    nodes,
    oom,
    probes,
    pvc,
    quota,
    rollout,
    scheduling,
    services,
)
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence
from kubilitics.ai.findings import Finding

log = logging.getLogger(__name__)

ANALYZERS: tuple[Analyzer, ...] = tuple(
    m.ANALYZER
    for m in (
        images,
        config_refs,
        command,
        crash,
        oom,
        init_containers,
        scheduling,
        pvc,
        probes,
        services,
        nodes,
        quota,
        limit_ranges,
        jobs,
        rollout,
        hpa,
        log_patterns,
    )
)


def run_analyzers(evidence: Evidence, analyzers: Sequence[Analyzer] = ANALYZERS) -> list[Finding]:
    findings: list[Finding] = []
    for analyzer in analyzers:
        try:
            findings.extend(analyzer(evidence))
        except Exception as exc:  # one broken rule must not cost the whole investigation
            log.exception("analyzer %s failed", analyzer.name)
            evidence.notes.append(f"analyzer {analyzer.name} failed: {type(exc).__name__}: {exc}")
    return findings


__all__ = ["ANALYZERS", "Analyzer", "run_analyzers"]
