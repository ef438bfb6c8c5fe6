"""Evidence documents for the analyzer tests.

`fixtures/<scenario>.json` is what `gather_evidence` collected on the test cluster for the scenario of
the same name (tests/evals/scenarios and tests/evals/extra), captured with
`python -m tests.evals.run --capture DIR`: real pods, events and log lines, not invented fields.
Negative and edge cases start from one of them and change what a test is about.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubilitics.ai.evidence import Evidence

FIXTURES = Path(__file__).parent / "fixtures"


def load_evidence(name: str) -> Evidence:
    return Evidence.from_dict(json.loads((FIXTURES / f"{name}.json").read_text()))


@pytest.fixture()
def evidence() -> Callable[[str], Evidence]:
    """evidence("crashloop-app-error") -> a fresh Evidence (safe to modify)."""
    return load_evidence


@pytest.fixture()
def raw() -> Callable[[str], dict[str, Any]]:
    """raw("crashloop-app-error") -> the evidence document as JSON (to build variants)."""

    def _raw(name: str) -> dict[str, Any]:
        return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))

    return _raw


def pods(ev: Evidence) -> list[dict[str, Any]]:
    return sorted(ev.pods, key=lambda p: p["metadata"]["name"])


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))
