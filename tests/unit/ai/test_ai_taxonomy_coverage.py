"""The analyzers together cover the taxonomy, and the ranking knows every category."""

from __future__ import annotations

from kubilitics.ai.analyzers import ANALYZERS
from kubilitics.ai.taxonomy import CATEGORIES, CLUSTER_CATEGORIES, HEALTHY, PRECEDENCE, UNKNOWN


def test_every_category_has_an_analyzer_that_reports_it():
    covered = {c for a in ANALYZERS for c in a.categories}
    assert covered == set(CATEGORIES) - {HEALTHY, UNKNOWN} - CLUSTER_CATEGORIES


def test_analyzer_names_are_unique_and_categories_are_real():
    names = [a.name for a in ANALYZERS]
    assert len(names) == len(set(names))
    for a in ANALYZERS:
        assert set(a.categories) <= set(PRECEDENCE), a.name


def test_causes_rank_before_symptoms():
    before = PRECEDENCE.index
    assert before("node_not_ready") < before("readiness_probe_failure")
    assert before("missing_configmap") < before("app_crash")
    assert before("quota_exceeded") < before("rollout_stuck")
    assert before("oom_killed") < before("app_crash")
    assert before("dns_failure") < before("job_backoff_limit") < before("app_crash")
