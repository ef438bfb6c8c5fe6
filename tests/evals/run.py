"""Diagnosis evals: apply each scenario to the test cluster, wait for its symptoms, diagnose, score.

    python -m tests.evals.run                      # every scenario under tests/evals/scenarios
    python -m tests.evals.run --only node-down     # one (repeat --only, or comma-separate)
    python -m tests.evals.run --scenarios DIR      # scenarios it has never seen
    python -m tests.evals.run --json results.json  # full diagnoses, for inspection
    python -m tests.evals.run --api                # through the real API on a local server (make evals)

A scenario is a folder with `manifests.yaml` (what a user would write; applied into a fresh
namespace) and `scenario.yaml`:

    target: {kind: Deployment, name: web}     # what to investigate
    expected: image_not_found                 # the category (../shared/scenarios/README.md)
    symptoms_after_seconds: 5                 # symptoms take about this long to show
    timeout_seconds: 120                      # give up waiting after this
    symptoms:                                 # optional: checks that the failure really shows
      - {kind: Pod, selector: app=web, jsonpath: '{.items[*].status...}', matches: 'ImagePullBackOff'}
    stages:                                   # optional: later manifests, once a condition holds
      - wait_for: {kind: Deployment, name: web, condition: Available, timeout_seconds: 90}
        apply: other.yaml

`__NAMESPACE__` in any file is replaced by the run's namespace (to name cluster-wide objects, such as
a Node of the scenario's own, uniquely); objects outside the namespace are deleted afterwards.

The diagnosis never sees the scenario: it gets the target's kind, namespace and name, gathers what
the cluster reports and diagnoses (in-process, `gather_evidence` + `diagnose`; the investigation API
takes this place later). The runner only decides *when* to diagnose: after the declared symptoms
show (or, for scenarios without them, once the diagnosis says the picture has settled), and once
two polls in a row agree.
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
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
STATE = Path(os.environ.get("KUBILITICS_TESTBED_STATE", REPO / ".testbed"))
CACHE = Path(os.environ.get("KUBILITICS_TESTBED_CACHE", Path.home() / ".cache" / "kubilitics-testbed"))
CONTEXT = os.environ.get("KUBILITICS_TESTBED_CLUSTER", "kubilitics-testbed")
PLACEHOLDER = "__NAMESPACE__"
NAMESPACE_LABEL = "kubilitics.eval/scenario"
POLL_SECONDS = 3.0
SETTLE_SECONDS = 45.0  # after the symptoms show, how long the diagnosis may take to settle


# ---- scenarios -------------------------------------------------------------------------------------


@dataclass
class Symptom:
    kind: str
    jsonpath: str
    matches: str
    name: str | None = None
    selector: str | None = None
    field_selector: str | None = None


@dataclass
class Stage:
    apply: str
    wait_for: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    path: Path
    target_kind: str
    target_name: str
    expected: str
    description: str = ""
    symptoms_after: float = 0.0
    timeout: float = 120.0
    symptoms: list[Symptom] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Scenario:
        spec = yaml.safe_load((path / "scenario.yaml").read_text()) or {}
        target = spec.get("target") or {}
        return cls(
            name=path.name,
            path=path,
            target_kind=str(target["kind"]),
            target_name=str(target["name"]),
            expected=str(spec.get("expected") or spec.get("expected_category")),
            description=" ".join(str(spec.get("description") or "").split()),
            symptoms_after=float(spec.get("symptoms_after_seconds") or 0),
            timeout=float(spec.get("timeout_seconds") or 120),
            symptoms=[Symptom(**s) for s in spec.get("symptoms") or []],
            stages=[
                Stage(apply=s["apply"], wait_for=s.get("wait_for") or {}) for s in spec.get("stages") or []
            ],
        )


def discover(root: Path, only: list[str] | None = None) -> list[Scenario]:
    found = sorted(
        p for p in root.iterdir() if (p / "scenario.yaml").is_file() and (p / "manifests.yaml").is_file()
    )
    if only:
        wanted = set(only)
        missing = wanted - {p.name for p in found}
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
        """(evidence, diagnosis)"""
        from kubilitics.ai.diagnosis import diagnose
        from kubilitics.ai.gather import gather_evidence

        evidence = gather_evidence(self.kube, self.context, kind, namespace, name)
        return evidence, diagnose(evidence)


# ---- one run -----------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    expected: str
    got: str = "error"
    confidence: float = 0.0
    summary: str = ""
    symptoms_seen: bool | None = None
    seconds: float = 0.0
    error: str | None = None
    diagnosis: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None
    polls: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.got == self.expected


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

    def run(self) -> Result:
        result = Result(self.s.name, self.s.expected)
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
            self.namespace,
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
            out = self.kubectl(*args, "-n", self.namespace, "-o", f"jsonpath={symptom.jsonpath}", check=False)
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
            evidence, diagnosis = self.diagnoser(self.s.target_kind, self.namespace, self.s.target_name)
            category = diagnosis.root_cause.category
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
        result.got = diagnosis.root_cause.category
        result.confidence = diagnosis.root_cause.confidence
        result.summary = diagnosis.root_cause.summary
        result.diagnosis = diagnosis.to_dict()
        result.evidence = evidence.to_dict() if evidence is not None else None  # None through the API

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
    by_category: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_category[r.expected].append(r)
    print("\naccuracy per category:")
    for category in sorted(by_category):
        rs = by_category[category]
        right = sum(r.correct for r in rs)
        print(f"  {category:<28} {right}/{len(rs)}")
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
        "healthy_misdiagnosed": healthy_missed,
        "false_healthy": false_healthy,
        "symptoms_missing": missing,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.evals.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="scenario name(s), comma-separated or repeated")
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS, help="folder of scenario folders")
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
    scenarios = discover(args.scenarios, only or None)
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
            f"polls={' '.join(r.polls)}{' error=' + r.error if r.error else ''}",
            flush=True,
        )
        return r

    with stack, ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        results = list(pool.map(one, scenarios))
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
