"""The analyzer interface: a named pure function from evidence to findings, and what it may report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kubilitics.ai.evidence import Evidence
from kubilitics.ai.findings import Finding


@dataclass(frozen=True)
class Analyzer:
    name: str
    categories: tuple[str, ...]  # the taxonomy categories it may report
    run: Callable[[Evidence], list[Finding]]

    def __call__(self, evidence: Evidence) -> list[Finding]:
        findings = self.run(evidence)
        for finding in findings:
            finding.analyzer = self.name
        return findings
