"""Diagnosis evals: apply each scenario to the test cluster, wait for its symptoms, diagnose, score.

    python -m tests.evals.run                      # every scenario under tests/evals/scenarios and scopes
    python -m tests.evals.run --only node-down     # one (repeat --only, or comma-separate)
    python -m tests.evals.run --scenarios DIR      # scenarios it has never seen (repeatable; extra, running)
    python -m tests.evals.run --json results.json  # full diagnoses, for inspection
    python -m tests.evals.run --api                # through the real API on a local server (make evals)

A scenario is a folder with `manifests.yaml` (what a user would write; applied into a fresh
namespace) and `scenario.yaml`:

    target: {kind: Deployment, name: web}     # what to investigate: a resource, or a scope:
                                              # {kind: Namespace} (the run's), {kind: Node, name: ...},
                                              # {kind: Cluster} (run alone, after the others)
    expected: image_not_found                 # the category (../shared/scenarios/README.md)
    symptoms_after_seconds: 5                 # symptoms take about this long to show
    timeout_seconds: 120                      # give up waiting after this
    symptoms:                                 # optional: checks that the failure really shows
      - {kind: Pod, selector: app=web, jsonpath: '{.items[*].status...}', matches: 'ImagePullBackOff'}
    stages:                                   # optional: later manifests, once a condition holds
      - wait_for: {kind: Deployment, name: web, condition: Available, timeout_seconds: 90}
        apply: other.yaml
    findings:                                 # optional: problems the roll-up must list (subject
      - {kind: Job, name: db-migrate, category: job_backoff_limit}   # and/or category; namespace:
    not_in_findings:                          # the run's unless given) and ones it must not list
      - {kind: Deployment, name: web}

`__NAMESPACE__` in any file is replaced by the run's namespace (to name cluster-wide objects, such as
a Node of the scenario's own, uniquely); objects outside the namespace are deleted afterwards.

The diagnosis never sees the scenario: it gets the target's kind, namespace and name, gathers what
the cluster reports and diagnoses (in-process, `gather_evidence` + `diagnose`; the investigation API
takes this place later). The runner only decides *when* to diagnose: after the declared symptoms
show (or, for scenarios without them, once the diagnosis says the picture has settled), and once
two polls in a row agree.

Scopes (`python -m tests.evals.run` prints accuracy per scope: resource, namespace, node, cluster):
a Namespace target is the run's own namespace; a Node target is a Node the scenario brings (named
after the run's namespace, `__NAMESPACE__-worker`); a Cluster target sees the whole test cluster, so
cluster scenarios run one at a time after every other scenario is done and its namespaces are gone,
and they are judged on the scenario's own objects only: what the diagnosis got is the top finding
whose subject lies in one of the scenario's namespaces (the run's, or `__NAMESPACE__-*`) or is one
of its Nodes; `findings` / `not_in_findings` name the rest (whatever else the cluster holds is
ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EVALS = Path(__file__).resolve().parent
SCENARIOS = EVALS / "scenarios"
SCOPES = EVALS / "scopes"  # namespace, node and cluster investigations (run by default)
# Running-but-failing pods: ready pods whose logs name a cause (ai/log_scan.py), at every scope.
RUNNING = EVALS / "running"
DEFAULT_SETS = (SCENARIOS, SCOPES, RUNNING)
STATE = Path(os.environ.get("KUBILITICS_TESTBED_STATE", REPO / ".testbed"))
CACHE = Path(os.environ.get("KUBILITICS_TESTBED_CACHE", Path.home() / ".cache" / "kubilitics-testbed"))
CONTEXT = os.environ.get("KUBILITICS_TESTBED_CLUSTER", "kubilitics-testbed")
PLACEHOLDER = "__NAMESPACE__"
NAMESPACE_LABEL = "kubilitics.eval/scenario"
POLL_SECONDS = 3.0
SETTLE_SECONDS = 45.0  # after the symptoms show, how long the diagnosis may take to settle
SCOPE_OF = {"Namespace": "namespace", "Node": "node", "Cluster": "cluster"}  # anything else: resource
SCOPE_ORDER = ("resource", "namespace", "node", "cluster")


# ---- scenarios -------------------------------------------------------------------------------------


@dataclass
class Symptom:
    kind: str
    jsonpath: str
    matches: str
    name: str | None = None
    selector: str | None = None
    field_selector: str | None = None
    namespace: str | None = None  # default: the run's (__NAMESPACE__-other for a second namespace)


@dataclass
class FindingCheck:
    """A finding of the roll-up: its subject (kind, name, namespace) and/or category, as far as given."""

    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    category: str | None = None

    def rendered(self, namespace: str) -> FindingCheck:
        def r(value: str | None) -> str | None:
            return render(value, namespace) if value is not None else None

        ns = r(self.namespace)
        if ns is None and self.kind not in CLUSTER_KINDS:
            ns = namespace
        return FindingCheck(self.kind, r(self.name), ns, self.category)

    def matches(self, finding: dict[str, Any]) -> bool:
        subject = finding.get("subject") or {}
        return (
            (self.kind is None or subject.get("kind") == self.kind)
            and (self.name is None or subject.get("name") == self.name)
            and (self.namespace is None or subject.get("namespace") == self.namespace)
            and (self.category is None or finding.get("category") == self.category)
        )

    def __str__(self) -> str:
        subject = " ".join(
            x for x in (self.kind, f"{self.namespace}/" if self.namespace else None, self.name) if x
        ).replace("/ ", "/")
        return f"{subject or 'anything'}{f': {self.category}' if self.category else ''}"


@dataclass
class Stage:
    apply: str
    wait_for: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    path: Path
    target_kind: str
    target_name: str | None
    expected: str
    description: str = ""
    symptoms_after: float = 0.0
    timeout: float = 120.0
    symptoms: list[Symptom] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    findings: list[FindingCheck] = field(default_factory=list)
    not_in_findings: list[FindingCheck] = field(default_factory=list)

    @property
    def scope(self) -> str:
        return SCOPE_OF.get(self.target_kind, "resource")

    @classmethod
    def load(cls, path: Path) -> Scenario:
        spec = yaml.safe_load((path / "scenario.yaml").read_text()) or {}
        target = spec.get("target") or {}
        kind = str(target["kind"])
        if kind not in ("Namespace", "Cluster") and not target.get("name"):
            raise SystemExit(f"{path}: target {kind} needs a name")
        return cls(
            name=path.name,
            path=path,
            target_kind=kind,
            target_name=str(target["name"]) if target.get("name") else None,
            expected=str(spec.get("expected") or spec.get("expected_category")),
            description=" ".join(str(spec.get("description") or "").split()),
            symptoms_after=float(spec.get("symptoms_after_seconds") or 0),
            timeout=float(spec.get("timeout_seconds") or 120),
            symptoms=[Symptom(**s) for s in spec.get("symptoms") or []],
            stages=[
                Stage(apply=s["apply"], wait_for=s.get("wait_for") or {}) for s in spec.get("stages") or []
            ],
            findings=[FindingCheck(**f) for f in spec.get("findings") or []],
            not_in_findings=[FindingCheck(**f) for f in spec.get("not_in_findings") or []],
        )


def scenario_set(path: Path) -> Path:
    """A folder of scenario folders: as given, or by its name under tests/evals (extra, running)."""
    if path.is_dir() or path.is_absolute():
        return path
    return EVALS / path if (EVALS / path).is_dir() else path


def discover(roots: Path | list[Path], only: list[str] | None = None) -> list[Scenario]:
    roots = [roots] if isinstance(roots, Path) else roots
    found: list[Path] = []
    for root in roots:
        root = scenario_set(root)
        if not root.is_dir():
            raise SystemExit(f"no such folder of scenarios: {root}")
        found += sorted(
            p for p in root.iterdir() if (p / "scenario.yaml").is_file() and (p / "manifests.yaml").is_file()
        )
    names = [p.name for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SystemExit(f"scenario names must be unique across folders: {', '.join(twice)}")
    if only:
        wanted = set(only)
        missing = wanted - set(names)
        if missing:
            raise SystemExit(f"no such scenario: {', '.join(sorted(missing))}")
        found = [p for p in found if p.name in wanted]
    return [Scenario.load(p) for p in found]


# ---- the cluster -------------------------------------------------------------------------------------


class Kubectl:
    def __init__(self, kubeconfig: str, context: str, binary: str | None = None):
        self.kubeconfig = kubeconfig
        self.context = context
        default = CACHE / "bin" / "kubectl"
        self.binary = (
            binary
            or os.environ.get("KUBILITICS_TESTBED_KUBECTL")
            or (str(default) if default.is_file() else "kubectl")
        )

    def __call__(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        cmd = [self.binary, "--kubeconfig", self.kubeconfig, "--context", self.context, *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args[:4])} failed ({proc.returncode}): {proc.stderr.strip()[:600]}"
            )
        return proc.stdout

    def answers(self) -> bool:
        try:
            return (
                self("get", "--raw", "/readyz", "--request-timeout=5s", check=False, timeout=20).strip()
                == "ok"
            )
        except (OSError, subprocess.TimeoutExpired):
            return False


def ensure_cluster(kubectl: Kubectl, start: bool) -> None:
    if Path(kubectl.kubeconfig).is_file() and kubectl.answers():
        return
    if not start:
        raise SystemExit(f"the test cluster does not answer ({kubectl.kubeconfig}); run make testbed-up")
    print("starting the test cluster (scripts/testbed/up.sh) ...", flush=True)
    subprocess.run(
        ["bash", str(REPO / "scripts" / "testbed" / "up.sh")], check=True, stdin=subprocess.DEVNULL
    )


class Diagnoser:
    """gather_evidence + diagnose in-process, through the product's own Kubernetes gateway."""

    def __init__(self, kubeconfig: str, context: str, timeout: float = 10.0):
        from kubilitics.adapters.kube_rest import KubeRestClients
        from kubilitics.adapters.kubeconfig import KubeconfigSource
        from kubilitics.adapters.kubernetes import KubernetesGateway

        # Built here rather than from the container: the runner must not depend on (or change) the
        # process's settings, and the integration tests reset those between tests.
        self.kube = KubernetesGateway(KubeRestClients("us-east-1"), timeout)
        self.context = KubeconfigSource(path=Path(kubeconfig)).get().resolve(context)

    def __call__(self, kind: str, namespace: str, name: str) -> tuple[Any, Any]:
        """(evidence, diagnosis): for a scope, the investigation's evidence document and its roll-up
        (as services/investigation_tasks.py runs them)."""
        from kubilitics.ai.diagnosis import diagnose
        from kubilitics.ai.gather import gather_evidence

        from tests.evals.api import RolledUp

        if kind == "Namespace":
            from kubilitics.ai.triage import diagnose_namespace, gather_namespace

            document = gather_namespace(self.kube, self.context, name)
            return document, RolledUp(diagnose_namespace(document))
        if kind == "Node":
            from kubilitics.ai.node_triage import diagnose_node, gather_node

            document = gather_node(self.kube, self.context, name)
            return document, RolledUp(diagnose_node(document))
        if kind == "Cluster":
            from kubilitics.ai.cluster_triage import diagnose_cluster, gather_cluster

            document = gather_cluster(self.kube, self.context)
            return document, RolledUp(diagnose_cluster(document))
        evidence = gather_evidence(self.kube, self.context, kind, namespace, name)
        return evidence, diagnose(evidence)


# ---- one run -----------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    expected: str
    scope: str = "resource"
    got: str = "error"
    confidence: float = 0.0
    summary: str = ""
    symptoms_seen: bool | None = None
    seconds: float = 0.0
    error: str | None = None
    diagnosis: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None
    polls: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)  # findings checks that failed

    @property
    def correct(self) -> bool:
        return self.got == self.expected and not self.misses and self.error is None


def render(text: str, namespace: str) -> str:
    return text.replace(PLACEHOLDER, namespace)


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind")]


CLUSTER_KINDS = {
    "Node",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "Namespace",
    "PriorityClass",
    "CustomResourceDefinition",
    "IngressClass",
    "RuntimeClass",
}


class ScenarioRun:
    def __init__(
        self,
        scenario: Scenario,
        kubectl: Kubectl,
        diagnoser: Callable[[str, str, str], tuple[Any, Any]],
        keep: bool = False,
        log: Callable[[str], None] = print,
    ):
        self.s = scenario
        self.kubectl = kubectl
        self.diagnoser = diagnoser
        self.keep = keep
        self.log = log
        self.namespace = (
            f"eval-{re.sub(r'[^a-z0-9-]', '-', scenario.name.lower())[:40]}-{uuid.uuid4().hex[:5]}"
        )
        self.outside: list[dict[str, Any]] = []  # applied objects that namespace deletion does not remove

    @property
    def target_name(self) -> str:
        """The target's name in this run: a Namespace target without a name is the run's namespace."""
        if self.s.target_kind == "Cluster":
            return render(self.s.target_name or "", self.namespace)
        return render(self.s.target_name or self.namespace, self.namespace)

    def own(self, subject: dict[str, Any]) -> bool:
        """An object of this scenario's: in its namespace or one named after it (`__NAMESPACE__-x`),
        or a cluster-wide object named after it (its Node)."""
        ns, name = subject.get("namespace"), str(subject.get("name") or "")
        named = str(ns) if ns else name  # a namespaced object by its namespace, else by its name
        return named == self.namespace or named.startswith(f"{self.namespace}-")

    def run(self) -> Result:
        result = Result(self.s.name, self.s.expected, self.s.scope)
        started = time.monotonic()
        try:
            self._create_namespace()
            self._apply(self.s.path / "manifests.yaml")
            for stage in self.s.stages:
                self._wait_for(stage.wait_for)
                self._apply(self.s.path / stage.apply)
            self._observe(result)
        except Exception as exc:  # a broken scenario is a failed scenario, not a crashed run
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            result.seconds = round(time.monotonic() - started, 1)
            if not self.keep:
                self.cleanup()
        return result

    def _create_namespace(self) -> None:
        manifest = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": {NAMESPACE_LABEL: self.s.name[:63]}},
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        deadline = time.monotonic() + 30
        while self.kubectl("get", "sa", "default", "-n", self.namespace, check=False).strip() == "":
            if time.monotonic() > deadline:
                raise RuntimeError(f"no default ServiceAccount in {self.namespace}")
            time.sleep(0.5)

    def _apply(self, path: Path) -> None:
        docs = _documents(render(path.read_text(), self.namespace))
        for doc in docs:  # a scenario's further namespaces are the run's too (found and removed alike)
            if doc.get("kind") == "Namespace":
                doc.setdefault("metadata", {}).setdefault("labels", {})[NAMESPACE_LABEL] = self.s.name[:63]
        here = [d for d in docs if not (d.get("metadata") or {}).get("namespace")]
        elsewhere = [
            d for d in docs if (d.get("metadata") or {}).get("namespace") not in (None, self.namespace)
        ]
        self.outside += [d for d in docs if d.get("kind") in CLUSTER_KINDS] + elsewhere
        if here:
            self.kubectl("apply", "-n", self.namespace, "-f", "-", input=yaml.safe_dump_all(here))
        if elsewhere:
            self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(elsewhere))

    def _wait_for(self, cond: dict[str, Any]) -> None:
        if not cond:
            return
        name = render(str(cond["name"]), self.namespace)
        timeout = int(cond.get("timeout_seconds") or 120)
        self.kubectl(
            "wait",
            f"--for=condition={cond['condition']}",
            f"{cond['kind'].lower()}/{name}",
            "-n",
            render(str(cond.get("namespace") or self.namespace), self.namespace),
            f"--timeout={timeout}s",
            timeout=timeout + 30,
        )

    def symptoms_show(self) -> bool:
        for symptom in self.s.symptoms:
            args = ["get", symptom.kind.lower()]
            if symptom.name:
                args.append(render(symptom.name, self.namespace))
            if symptom.selector:
                args += ["-l", symptom.selector]
            if symptom.field_selector:
                args += ["--field-selector", symptom.field_selector]
            ns = render(symptom.namespace or self.namespace, self.namespace)
            out = self.kubectl(*args, "-n", ns, "-o", f"jsonpath={symptom.jsonpath}", check=False)
            if not re.search(symptom.matches, out.strip()):
                return False
        return True

    def _observe(self, result: Result) -> None:
        """Poll until the symptoms show and the diagnosis settles (two equal polls), or time runs out."""
        t0 = time.monotonic()
        symptoms_at: float | None = None
        previous: str | None = None
        diagnosis = None
        while True:
            elapsed = time.monotonic() - t0
            if symptoms_at is None and self.symptoms_show():
                symptoms_at = elapsed
            evidence, diagnosis = self.diagnoser(self.s.target_kind, self.namespace, self.target_name)
            category = self._category(diagnosis)
            result.polls.append(f"{elapsed:.0f}s:{category}{'' if diagnosis.settled else '~'}")
            ready = elapsed >= self.s.symptoms_after and (symptoms_at is not None or not self.s.symptoms)
            settled = diagnosis.settled or (
                symptoms_at is not None and elapsed - symptoms_at > SETTLE_SECONDS
            )
            if ready and settled and category == previous:
                break
            if elapsed > self.s.timeout:
                break
            previous = category
            time.sleep(POLL_SECONDS)
        result.symptoms_seen = symptoms_at is not None if self.s.symptoms else None
        result.got = self._category(diagnosis)
        result.confidence = diagnosis.root_cause.confidence
        result.summary = diagnosis.root_cause.summary
        if self.s.scope == "cluster":  # the cluster's root cause may be anyone's: report our top one
            top = self._own_top(diagnosis)
            result.confidence = float(top.get("confidence") or 0) if top else 0.0
            result.summary = str(top.get("summary") or "") if top else "nothing of the scenario's listed"
        result.diagnosis = diagnosis.to_dict()
        # None through the API; a scope's evidence document is plain JSON already
        result.evidence = evidence.to_dict() if hasattr(evidence, "to_dict") else evidence
        result.misses = self._check_findings(result.diagnosis)

    def _findings(self, diagnosis: dict[str, Any]) -> list[dict[str, Any]]:
        return [f for f in diagnosis.get("findings") or [] if isinstance(f, dict)]

    def _own_top(self, diagnosis: Any) -> dict[str, Any] | None:
        """The first (top-ranked) finding about one of this scenario's objects."""
        return next(
            (f for f in self._findings(diagnosis.to_dict()) if self.own(f.get("subject") or {})), None
        )

    def _category(self, diagnosis: Any) -> str:
        """What the diagnosis says: its root cause; for the cluster, the top finding among this
        scenario's own objects (healthy if none: whatever else the test cluster holds is not ours)."""
        if self.s.scope != "cluster":
            return str(diagnosis.root_cause.category)
        top = self._own_top(diagnosis)
        return str(top.get("category")) if top else "healthy"

    def _check_findings(self, diagnosis: dict[str, Any]) -> list[str]:
        findings = self._findings(diagnosis)
        misses = []
        for check in self.s.findings:
            want = check.rendered(self.namespace)
            if not any(want.matches(f) for f in findings):
                misses.append(f"not listed: {want}")
        for check in self.s.not_in_findings:
            unwanted = check.rendered(self.namespace)
            hits = [f for f in findings if unwanted.matches(f)]
            if hits:
                misses.append(f"listed but should not be: {unwanted} ({hits[0].get('category')})")
        return misses

    def cleanup(self) -> None:
        if self.outside:
            self.kubectl(
                "delete",
                "--ignore-not-found",
                "--wait=false",
                "-f",
                "-",
                input=yaml.safe_dump_all(self.outside),
                check=False,
            )
        self.kubectl("delete", "namespace", self.namespace, "--ignore-not-found", "--wait=false", check=False)


def wait_until_gone(kubectl: Kubectl, timeout: float = 180.0) -> None:
    """Until no namespace of an eval run is left (they are deleted without waiting), so that a cluster
    scenario sees what it brings and the cluster's own, not the previous scenarios' leftovers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = kubectl("get", "namespaces", "-l", NAMESPACE_LABEL, "-o", "name", check=False).split()
        if not left:
            return
        time.sleep(POLL_SECONDS)
    print(f"still being deleted after {timeout:.0f}s: {' '.join(left)}", flush=True)


# ---- report --------------------------------------------------------------------------------------------


def report(results: list[Result]) -> dict[str, Any]:
    width = max([len(r.scenario) for r in results] + [8])
    print()
    print(f"{'scenario':<{width}}  {'expected':<26} {'got':<26} {'conf':>4}  symptoms  {'time':>6}")
    for r in results:
        mark = "ok " if r.correct else "XX "
        seen = {True: "yes", False: "MISSING", None: "-"}[r.symptoms_seen]
        print(
            f"{r.scenario:<{width}}  {r.expected:<26} {r.got:<26} {r.confidence:>4.2f}  {seen:<8}  "
            f"{r.seconds:>5.0f}s {mark}"
        )
        if r.error:
            print(f"{'':<{width}}  error: {r.error}")
        for miss in r.misses:
            print(f"{'':<{width}}  {miss}")
    by_scope: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_scope[r.scope].append(r)
    print("\naccuracy per scope:")
    for scope in [s for s in SCOPE_ORDER if s in by_scope]:
        rs = by_scope[scope]
        right = sum(r.correct for r in rs)
        print(f"  {scope:<28} {right}/{len(rs)} ({100.0 * right / len(rs):.0f}%)")
    by_category: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_category[r.expected].append(r)
    print("\naccuracy per category:")
    for category in sorted(by_category):
        rs = by_category[category]
        right = sum(r.correct for r in rs)
        scopes = sorted({r.scope for r in rs}, key=SCOPE_ORDER.index)
        where = f"  ({', '.join(scopes)})" if scopes != ["resource"] else ""
        print(f"  {category:<28} {right}/{len(rs)}{where}")
    right = sum(r.correct for r in results)
    healthy_missed = [r.scenario for r in results if r.expected == "healthy" and not r.correct]
    false_healthy = [r.scenario for r in results if r.got == "healthy" and r.expected != "healthy"]
    missing = [r.scenario for r in results if r.symptoms_seen is False]
    pct = 100.0 * right / len(results) if results else 0.0
    print(f"\noverall: {right}/{len(results)} ({pct:.0f}%)")
    print(f"healthy misdiagnosed: {', '.join(healthy_missed) or 'no'}")
    print(f"said healthy when something was wrong: {', '.join(false_healthy) or 'never'}")
    if missing:
        print(f"symptoms never showed (the test cluster does not produce them): {', '.join(missing)}")
    return {
        "correct": right,
        "total": len(results),
        "by_scope": {
            scope: {"correct": sum(r.correct for r in rs), "total": len(rs)} for scope, rs in by_scope.items()
        },
        "healthy_misdiagnosed": healthy_missed,
        "false_healthy": false_healthy,
        "symptoms_missing": missing,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.evals.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="scenario name(s), comma-separated or repeated")
    parser.add_argument(
        "--scenarios",
        type=Path,
        action="append",
        help="folder of scenario folders, repeatable; a name under tests/evals (extra, running) will do "
        "(default: scenarios and scopes)",
    )
    parser.add_argument("--parallel", type=int, default=6, help="scenarios run at once (own namespaces)")
    parser.add_argument("--kubeconfig", default=str(STATE / "kubeconfig"))
    parser.add_argument("--context", default=CONTEXT)
    parser.add_argument("--keep", action="store_true", help="leave the namespaces for inspection")
    parser.add_argument("--no-start", action="store_true", help="fail instead of starting the test cluster")
    parser.add_argument("--json", type=Path, help="write every result and diagnosis here")
    parser.add_argument(
        "--capture", type=Path, help="write each scenario's final evidence to DIR/<name>.json"
    )
    parser.add_argument("--min-correct", type=int, default=0, help="exit 1 below this many correct")
    parser.add_argument(
        "--api", action="store_true", help="diagnose through POST /api/v1/ai/investigate on a local server"
    )
    parser.add_argument("--api-url", help="... on this running server instead (with --token)")
    parser.add_argument("--token", help="bearer token for --api-url")
    args = parser.parse_args(argv)
    only = [n.strip() for o in args.only or [] for n in o.split(",") if n.strip()]
    scenarios = discover(args.scenarios or list(DEFAULT_SETS), only or None)
    kubectl = Kubectl(args.kubeconfig, args.context)
    ensure_cluster(kubectl, start=not args.no_start)
    stack = contextlib.ExitStack()  # the local server of --api, stopped when the run ends
    if args.api or args.api_url:
        from tests.evals.api import api_diagnoser

        diagnoser: Callable[[str, str, str], tuple[Any, Any]] = api_diagnoser(args, stack)
    else:
        diagnoser = Diagnoser(args.kubeconfig, args.context)

    def one(s: Scenario) -> Result:
        print(f"[{s.name}] start (expect {s.expected})", flush=True)
        r = ScenarioRun(s, kubectl, diagnoser, keep=args.keep).run()
        print(
            f"[{s.name}] {'ok' if r.correct else 'WRONG'}: {r.got} ({r.confidence:.2f}) in {r.seconds:.0f}s "
            f"polls={' '.join(r.polls)}{' error=' + r.error if r.error else ''}"
            + "".join(f"; {m}" for m in r.misses),
            flush=True,
        )
        return r

    # Cluster scenarios see the whole cluster: they run one at a time once the others are done.
    together = [s for s in scenarios if s.scope != "cluster"]
    alone = [s for s in scenarios if s.scope == "cluster"]
    with stack:
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            results = list(pool.map(one, together))
        if alone and together and not args.keep:
            wait_until_gone(kubectl)
        results += [one(s) for s in alone]
    order = {s.name: i for i, s in enumerate(scenarios)}
    results.sort(key=lambda r: order[r.scenario])
    totals = report(results)
    if args.capture:
        args.capture.mkdir(parents=True, exist_ok=True)
        for r in results:
            if r.evidence:
                (args.capture / f"{r.scenario}.json").write_text(
                    json.dumps(r.evidence, indent=1, sort_keys=True)
                )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"totals": totals, "results": [{**r.__dict__, "evidence": None} for r in results]},
                indent=2,
                default=str,
            )
        )
    if totals["correct"] < args.min_correct or totals["healthy_misdiagnosed"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
