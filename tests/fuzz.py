"""`make fuzz`: Schemathesis against the local server on the test cluster, every check (issue 16).

Starts `kubilitics serve` on free ports against the test cluster (.testbed/kubeconfig), makes a
scratch namespace and an identity for the run, and runs `schemathesis run` on /openapi.json with
`--checks all` (response schema, status code, content type and header conformance, negative data
rejection, positive data acceptance, ignored auth, unsupported methods, ...) in every phase
(examples, coverage, fuzzing, stateful). Methods that change the cluster reach only the scratch
namespace: tests/fuzz_hooks.py pins the namespaces of every write to it, and the run's identity may
read the whole cluster but write only there (RBAC), so a write the hooks missed is refused. The
namespace and the RBAC objects are deleted at the end.

Rate limits: the run's token is an admin token (10x the per-user limits, services/ratelimit.py) and
the server runs with KUBILITICS_RATE_LIMIT_MULTIPLIER=100 (development only; production refuses it);
a 429 during the run is reported as a failure, so a limit never hides an operation.

Prints the requests made (test cases generated, and every response by status) and the failures;
exits 1 on any failure. `--examples` is Schemathesis's --max-examples (per operation, fuzzing phase).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.websocket import TESTBED_KUBECONFIG, Cluster  # noqa: E402
from tests.e2e.conftest import start_local_server  # noqa: E402

SCOPES = "read,write,delete,exec,admin"
# The local server's development-only rate-limit setting (production refuses it): with the admin
# token's 10x, a few thousand requests a minute in every category, so no operation is hidden by a 429.
SERVER_ENV = {"KUBILITICS_RATE_LIMIT_MULTIPLIER": "100"}
RBAC = "rbac.authorization.k8s.io/v1"

# Configured narrowly, each for a reason the README's API notes give. Schemathesis config file.
CONFIG = """
[auth.openapi.HTTPBearer]
bearer = "{token}"

[checks.positive_data_acceptance]
# A schema-valid request the server refuses with 400/422 is a contract failure: 429 is not expected
# either (the run fails on any 429, see tests/fuzz.py). 403: the run's identity may write only in the
# scratch namespace (a cluster-scoped kind is refused by the cluster).
expected-statuses = ["2xx", "401", "403", "404", "409", "410"]
"""


class Identity:
    """The run's RBAC: read everything cluster-wide, write only in the scratch namespace."""

    def __init__(self, cluster: Cluster, run: str):
        self.cluster = cluster
        self.run = run
        self.namespace = f"fuzz-{run}"
        self.group = f"fuzz-{run}"  # the server sends it as kubilitics:<group>
        self.created: list[tuple[str, str | None, str]] = []

    def _create(self, kind: str, namespace: str | None, body: dict[str, Any]) -> None:
        gateway, context = self.cluster.gateway, self.cluster.context
        gateway.create(context, gateway.resource_type(context, kind), namespace, body, dry_run=False)
        self.created.append((kind, namespace, body["metadata"]["name"]))

    def setup(self) -> None:
        subject = [{"kind": "Group", "name": f"kubilitics:{self.group}", "apiGroup": RBAC.split("/")[0]}]
        name = f"kubilitics-fuzz-{self.run}"
        self._create(
            "Namespace",
            None,
            {"metadata": {"name": self.namespace, "labels": {"kubilitics.fuzz/run": self.run}}},
        )
        self._create(
            "ClusterRole",
            None,
            {
                "apiVersion": RBAC,
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}],
            },
        )
        self._create(
            "ClusterRoleBinding",
            None,
            {
                "apiVersion": RBAC,
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC.split("/")[0], "kind": "ClusterRole", "name": name},
                "subjects": subject,
            },
        )
        self._create(
            "RoleBinding",
            self.namespace,
            {
                "apiVersion": RBAC,
                "kind": "RoleBinding",
                "metadata": {"name": "fuzz-writer", "namespace": self.namespace},
                "roleRef": {"apiGroup": RBAC.split("/")[0], "kind": "ClusterRole", "name": "admin"},
                "subjects": subject,
            },
        )

    def teardown(self) -> None:
        gateway, context = self.cluster.gateway, self.cluster.context
        for kind, namespace, name in reversed(self.created):
            if namespace is not None:
                continue  # goes with its namespace
            try:
                gateway.delete(context, gateway.resource_type(context, kind), None, name)
            except Exception as exc:  # keep deleting the others
                print(f"could not delete {kind} {name}: {exc}", file=sys.stderr)

    def token(self) -> str:
        from tests.support import dev_token

        return dev_token(f"fuzz-{self.run}", SCOPES, token_type="admin", groups=[self.group])


def run_schemathesis(args: Any, url: str, token: str, namespace: str, workdir: Path) -> dict[str, Any]:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG.format(token=token))
    report, stats = workdir / "report.json", workdir / "statuses.json"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(args.examples),
        "--workers",
        str(args.workers),
        "--seed",
        str(args.seed),
        "--request-timeout",
        "60",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'shared'}",  # the hooks use the server's selector parser
        "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
        "KUBILITICS_FUZZ_NAMESPACE": namespace,
        "KUBILITICS_FUZZ_STATS": str(stats),
    }
    started = time.monotonic()
    log = workdir / "schemathesis.log"
    with log.open("w") as out:
        code = subprocess.run(command, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT).returncode
    text = log.read_text()
    if code != 0 or args.verbose:
        print(text[-20000:] if not args.verbose else text)
    summary = json.loads(report.read_text()) if report.exists() else {}
    statuses = json.loads(stats.read_text()) if stats.exists() else {}
    return {"code": code, "summary": summary, "statuses": statuses, "seconds": time.monotonic() - started}


def report(result: dict[str, Any]) -> int:
    summary, statuses = result["summary"], result["statuses"]
    cases = summary.get("test_cases", {})
    failures = summary.get("failures", [])
    errors = summary.get("errors", [])
    sent = sum(statuses.values())
    print(
        f"\nfuzz: {cases.get('generated', 0)} test cases generated, {sent} requests answered "
        f"({' '.join(f'{s}x{n}' for s, n in sorted(statuses.items()))}) in {result['seconds']:.0f} s"
    )
    unique = sum(f.get("count", 1) for f in failures)
    print(f"fuzz: {unique} failures, {len(errors)} errors")
    for failure in failures:
        print(f"  {failure.get('code')} {failure.get('title')}: {', '.join(failure.get('operations', []))}")
    for error in errors:
        print(f"  error: {str(error)[:300]}")
    problems = []
    if result["code"] != 0 or failures or errors:
        problems.append("schemathesis reported failures")
    if statuses.get("429"):
        problems.append(f"{statuses['429']} answers were 429: a rate limit hid operations")
    if not summary:
        problems.append("no report")
    print("fuzz: " + ("FAILED (" + "; ".join(problems) + ")" if problems else "passed"))
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="max examples per operation")
    # one worker: Python 3.11.7's ast.parse is not thread-safe (Hypothesis describes lambdas with it)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--kubeconfig", default=str(TESTBED_KUBECONFIG))
    parser.add_argument("--verbose", action="store_true", help="print Schemathesis's whole output")
    args = parser.parse_args(argv)
    kubeconfig = Path(args.kubeconfig)
    cluster = Cluster(kubeconfig)
    identity = Identity(cluster, uuid.uuid4().hex[:6])
    identity.setup()
    try:
        with tempfile.TemporaryDirectory(prefix="kubilitics-fuzz-") as workdir:
            folder = Path(workdir)
            with start_local_server(
                SimpleNamespace(kubeconfig=str(kubeconfig)),
                SimpleNamespace(mktemp=lambda name: Path(tempfile.mkdtemp(prefix=name, dir=folder))),
                extra_env=SERVER_ENV,
            ) as server:
                result = run_schemathesis(args, server.url, identity.token(), identity.namespace, folder)
        return report(result)
    finally:
        identity.teardown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
