"""Jobs that failed: too many failed pods (BackoffLimitExceeded) or too long (DeadlineExceeded).

A CronJob is judged by its most recent Job: an older failure that a later run has cleared is history.
"""

from __future__ import annotations

from typing import Any

from kubilitics.ai.analyzers._common import crash_logs, describe, error_lines, quote
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_event, cite_field, cite_log
from kubilitics.ai.kube_json import condition, containers, controller_of, meta, parse_time


def analyze(ev: Evidence) -> list[Finding]:
    findings: list[Finding] = []
    for job in _jobs_in_scope(ev):
        failed = condition(job, "Failed")
        if not failed or failed.get("status") != "True":
            continue
        reason = str(failed.get("reason") or "")
        if reason == "DeadlineExceeded":
            findings.append(_deadline(ev, job, failed))
        else:
            findings.append(_backoff(ev, job, failed))
    return findings


def _jobs_in_scope(ev: Evidence) -> list[dict[str, Any]]:
    jobs = ev.of_kind("Job")
    by_cronjob: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        owner = controller_of(job) or {}
        by_cronjob.setdefault(str(owner.get("uid") or meta(job).get("uid")), []).append(job)
    latest = []
    for group in by_cronjob.values():
        group.sort(key=lambda j: meta(j).get("creationTimestamp") or "")
        latest.append(group[-1])
    return latest


def _owner_ref(ev: Evidence, job: dict[str, Any]) -> ObjectRef:
    owner = controller_of(job) or {}
    if owner.get("kind") == "CronJob" and ev.get(
        "CronJob", str(owner.get("name")), meta(job).get("namespace")
    ):
        return ObjectRef("CronJob", str(owner.get("name")), meta(job).get("namespace"))
    return ObjectRef.of(job)


def _pods_of(ev: Evidence, job: dict[str, Any]) -> list[dict[str, Any]]:
    uid = meta(job).get("uid")
    return [p for p in ev.pods if (controller_of(p) or {}).get("uid") == uid]


def _failure_story(ev: Evidence, job: dict[str, Any]) -> tuple[str, list[Citation]]:
    """How its pods failed: the exit code and the error line of one failed pod."""
    for pod in _pods_of(ev, job):
        for c in containers(pod):
            term, path = c.recent_termination()
            if not term or not term.get("exitCode"):
                continue
            cites = [cite_field(pod, f"{path}.exitCode", term.get("exitCode"))]
            reason = term.get("reason")
            line = ""
            for tail in crash_logs(ev, pod, c)[:1]:
                lines = error_lines(tail, 1)
                if lines:
                    line = lines[-1]
                    cites.append(cite_log(tail, line))
            said = f" after logging {quote(line, 140)!r}" if line else ""
            return (
                f"its pods' container {c.name} exits with code {term.get('exitCode')}"
                f"{f' ({reason})' if reason and reason != 'Error' else ''}{said}"
            ), cites
    return "", []


def _backoff(ev: Evidence, job: dict[str, Any], failed: dict[str, Any]) -> Finding:
    ref = ObjectRef.of(job)
    owner = _owner_ref(ev, job)
    spec, status = job.get("spec") or {}, job.get("status") or {}
    limit = spec.get("backoffLimit", 6)
    story, cites = _failure_story(ev, job)
    cites = [
        cite_field(job, "status.conditions[Failed]", f"{failed.get('reason')}: {failed.get('message')}"),
        cite_field(job, "status.failed", status.get("failed", 0)),
        *[cite_event(e) for e in ev.events_for(job, reason="BackoffLimitExceeded")[:1]],
        *cites,
    ]
    of = f" (of {describe(owner)})" if owner != ref else ""
    summary = (
        f"Job {ref.name}{of} failed: {status.get('failed', 0)} pod(s) failed, more than its backoffLimit of "
        f"{limit}{'; ' + story if story else ''}."
    )
    recreate = (
        f"then let {describe(owner)} start the next run"
        if owner.kind == "CronJob"
        else f"then delete and re-create Job {ref.name} (a Job's pod template cannot be changed)"
    )
    return Finding(
        category="job_backoff_limit",
        summary=summary,
        confidence=0.95 if failed.get("reason") == "BackoffLimitExceeded" else 0.75,
        severity="high",
        subject=owner,
        citations=cites,
        recommendations=[
            Recommendation(
                "fix_job_failure",
                f"Fix why the pods of Job {ref.name} fail{' (' + story + ')' if story else ''}, {recreate}.",
                owner,
            )
        ],
    )


def _deadline(ev: Evidence, job: dict[str, Any], failed: dict[str, Any]) -> Finding:
    ref = ObjectRef.of(job)
    owner = _owner_ref(ev, job)
    spec, status = job.get("spec") or {}, job.get("status") or {}
    deadline = spec.get("activeDeadlineSeconds")
    started, ended = parse_time(status.get("startTime")), parse_time(failed.get("lastTransitionTime"))
    ran = f" after {int(ended - started)} s" if started and ended else ""
    cites = [
        cite_field(job, "status.conditions[Failed]", f"{failed.get('reason')}: {failed.get('message')}"),
        cite_field(job, "spec.activeDeadlineSeconds", deadline),
        *[cite_event(e) for e in ev.events_for(job, reason="DeadlineExceeded")[:1]],
    ]
    proposed = int(deadline) * 3 if deadline else None
    patch = None
    if proposed and owner.kind == "CronJob":
        patch = {"spec": {"jobTemplate": {"spec": {"activeDeadlineSeconds": proposed}}}}
    of = f" (of {describe(owner)})" if owner != ref else ""
    return Finding(
        category="job_deadline_exceeded",
        summary=(
            f"Job {ref.name}{of} was stopped{ran}: it ran longer than its activeDeadlineSeconds of "
            f"{deadline} "
            "and its pods were terminated."
        ),
        confidence=0.95,
        severity="high",
        subject=owner,
        citations=cites,
        recommendations=[
            Recommendation(
                "increase_job_deadline",
                f"Raise activeDeadlineSeconds of {describe(owner)} from {deadline} to "
                f"{proposed or 'what the work needs'} "
                f"(or make the work faster){'' if owner.kind == 'CronJob' else ', then re-create the Job'}.",
                owner,
                patch,
            )
        ],
    )


ANALYZER = Analyzer("jobs", ("job_backoff_limit", "job_deadline_exceeded"), analyze)
