"""jobs analyzer: Jobs that hit their backoff limit or their deadline."""

from __future__ import annotations

from kubilitics.ai.analyzers import jobs


def test_backoff_limit_tells_how_the_pods_failed(evidence):
    [finding] = jobs.ANALYZER(evidence("job-always-fails"))
    assert finding.category == "job_backoff_limit"
    assert "3 pod(s) failed" in finding.summary and "backoffLimit of 2" in finding.summary
    assert "ERROR: relation invoices does not exist" in finding.summary
    assert any(c.source == "log" for c in finding.citations)


def test_deadline_exceeded(evidence):
    [finding] = jobs.ANALYZER(evidence("job-deadline"))
    assert finding.category == "job_deadline_exceeded"
    assert "activeDeadlineSeconds of 15" in finding.summary
    assert "from 15 to 45" in finding.recommendations[0].details


def test_cronjob_is_judged_by_its_latest_job(evidence):
    [finding] = jobs.ANALYZER(evidence("cronjob-fails"))
    assert finding.category == "job_backoff_limit"
    assert finding.subject.kind == "CronJob" and finding.subject.name == "cleanup"
    assert "/data/uploads/index.txt" in finding.summary


def test_completed_jobs_are_fine(evidence):
    assert jobs.ANALYZER(evidence("healthy-job")) == []
