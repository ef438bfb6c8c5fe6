"""Cold start per function, against a floor app measured in the same run (issue 2, "Benchmark").

Each measurement is a fresh interpreter (bench/child.py) that imports `functions/<name>/app.py` and
handles one event from `events/<name>/`. The floor is a one-route FastAPI+Mangum app making the same
kinds of SDK calls (bench/floors/). DynamoDB is a moto server started here; Kubernetes is the test
cluster. Prints figures only: nothing here fails on a slow time.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import itertools
import json
import logging
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
FUNCTIONS = REPO / "functions"
EVENTS = REPO / "events"
FLOORS = BENCH / "floors"
CHILD = BENCH / "child.py"
TESTBED_KUBECONFIG = REPO / ".testbed" / "kubeconfig"

TARGET_RATIO = 1.15
RUNS = 10
JWT_SECRET = "kubilitics-bench-secret-of-at-least-32-bytes"  # shorter HS256 keys draw a warning


@dataclass(frozen=True)
class Profile:
    floor: str  # a module of bench/floors/
    events: tuple[str, ...] = ()  # files of events/<function>/; empty: the first authenticated GET
    ai: bool = False  # AI functions are the only ones allowed to import anthropic


# The floor follows what the function calls. Rows for functions not built when this was written come
# from template.yaml and the architecture notes: check a row when its function lands. One event per
# function keeps a run under ~3 minutes; list more to compare routes (each adds 10 cold starts).
PROFILES: dict[str, Profile] = {
    "health": Profile("dynamodb_kubernetes", ("get_version.json",)),  # auth + rate limit + /version
    "resources": Profile("dynamodb_kubernetes", ("list_resources.json",)),
    "cluster": Profile("dynamodb_kubernetes", ("list_namespaces.json",)),
    "pods": Profile("dynamodb_kubernetes", ("get_logs.json",)),
    "observability": Profile("dynamodb_kubernetes", ("list_events.json",)),
    "ai_admin": Profile("dynamodb", ("get_status.json",), ai=True),
    "ai_investigations": Profile("dynamodb", ("list_investigations.json",), ai=True),
    "ai_insights": Profile("dynamodb", ("list_insights.json",), ai=True),
    "ai_actions": Profile("dynamodb", ("list_pending_actions.json",), ai=True),
}
DEFAULT_PROFILE = Profile("dynamodb_kubernetes")


@dataclass(frozen=True)
class Target:
    """One thing to cold-start: a function with one of its events, or a floor."""

    label: str
    app: Path
    event: Path


@dataclass(frozen=True)
class Case:
    function: Target
    floor: Target
    ai: bool


# --- which functions to measure -------------------------------------------------------------------


def handler_kind(app: Path) -> str:
    """'fastapi' for a Mangum-wrapped app; otherwise why the function is skipped."""
    tree = ast.parse(app.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "handler" and _is_stub(node.body):
            return "placeholder (`def handler(event, context): ...`)"
    called = {
        call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
    }
    if called & {"make_handler", "Mangum"}:
        return "fastapi"
    return "not a FastAPI+Mangum handler (no floor to compare it with)"


def _is_stub(body: list[ast.stmt]) -> bool:
    return all(
        isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
        for stmt in body
    )


def default_event(function: str) -> Path | None:
    """The first GET carrying a bearer token (the common path: auth, rate limit, route), else any."""
    events = sorted((EVENTS / function).glob("*.json"))

    def is_authenticated_get(path: Path) -> bool:
        event = json.loads(path.read_text())
        method = event.get("requestContext", {}).get("http", {}).get("method") or event.get("httpMethod")
        return method == "GET" and "authorization" in {k.lower() for k in event.get("headers") or {}}

    return next((path for path in events if is_authenticated_get(path)), events[0] if events else None)


def discover(only: list[str]) -> tuple[list[Case], list[str]]:
    cases, notes = [], []
    floors: dict[str, Target] = {}  # one per kind, shared: its catch-all route costs the same for any event
    for folder in sorted(p for p in FUNCTIONS.iterdir() if (p / "app.py").is_file()):
        name = folder.name
        if only and name not in only:
            continue
        kind = handler_kind(folder / "app.py")
        if kind != "fastapi":
            notes.append(f"{name}: skipped, {kind}")
            continue
        profile = PROFILES.get(name)
        if profile is None:
            profile = DEFAULT_PROFILE
            notes.append(f"{name}: no row in PROFILES, compared with the {profile.floor} floor")
        events = [EVENTS / name / event for event in profile.events]
        for event in events:
            if not event.is_file():
                notes.append(f"{name}: PROFILES names {event.relative_to(REPO)}, which does not exist")
        events = [event for event in events if event.is_file()]
        if not events:
            fallback = default_event(name)
            if fallback is None:
                notes.append(f"{name}: skipped, no event in events/{name}/")
                continue
            events = [fallback]
        floor = floors.setdefault(
            profile.floor, Target(f"floor:{profile.floor}", FLOORS / f"{profile.floor}.py", events[0])
        )
        for event in events:
            cases.append(Case(Target(f"{name}/{event.stem}", folder / "app.py", event), floor, profile.ai))
    notes += [f"{name}: not found under functions/" for name in only if not (FUNCTIONS / name).is_dir()]
    return cases, notes


# --- the environment the children run in ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_cluster(kubeconfig: Path) -> str | None:
    """Why the cluster cannot be used, or None. Without it every Kubernetes call would time out."""
    import yaml

    if not kubeconfig.is_file():
        return f"no kubeconfig at {kubeconfig}"
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    server = next(c["cluster"]["server"] for c in config["clusters"] if c["name"] == context["cluster"])
    address = urlsplit(server)
    try:
        socket.create_connection((address.hostname, address.port or 443), timeout=2).close()
    except OSError as exc:
        return f"Kubernetes API {server} unreachable ({exc})"
    return None


def ensure_event_pods(kubeconfig: Path, cases: list[Case]) -> list[str]:
    """The pods that events name (`/api/v1/pods/<ns>/<name>/...`) exist and run, so that a function
    is timed on its real path (reading logs), not on a quick 404. Returns notes for what failed."""
    wanted = set()
    for case in cases:
        path = json.loads(case.function.event.read_text()).get("rawPath", "")
        if match := re.fullmatch(r"/api/v1/pods/([^/]+)/([^/]+)/.*", path):
            wanted.add((match[1], match[2]))
    if not wanted:
        return []
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    notes = []
    for namespace, name in sorted(wanted):
        try:
            api.read_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            container = {"name": "app", "image": "nginx:1.27"}
            body = {
                "metadata": {"name": name, "labels": {"app": "bench"}},
                "spec": {"containers": [container]},
            }
            api.create_namespaced_pod(namespace, body)
        deadline = time.monotonic() + 60
        while api.read_namespaced_pod(name, namespace).status.phase != "Running":
            if time.monotonic() > deadline:
                notes.append(f"pod {namespace}/{name} (named by an event) is not Running after 60 s")
                break
            time.sleep(1)
    return notes


def child_env(kubeconfig: Path) -> dict[str, str]:
    """The caller's environment without anything that would change what a child does, plus ours."""
    dropped = ("KUBILITICS_", "AWS_", "POWERTOOLS_", "PYTHON", "KUBECONFIG")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env.update(
        KUBILITICS_ENV="test",
        KUBILITICS_JWT_SECRET=JWT_SECRET,
        KUBILITICS_KUBECONFIG=str(kubeconfig),
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        # no ~/.aws files and no instance metadata lookups: the same inputs on every machine
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        POWERTOOLS_SERVICE_NAME="kubilitics",
        POWERTOOLS_LOG_LEVEL="INFO",  # the template's default
    )
    return env


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Runs the block with exactly `env` as os.environ (settings are read from it), then restores it."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def dynamodb_server(env: dict[str, str]) -> Iterator[str]:
    """moto as a server on a free port, with the template's tables; yields its endpoint."""
    import boto3
    from kubilitics import container
    from kubilitics.local.tables import create_tables
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with environment({**env, "KUBILITICS_AWS_ENDPOINT_URL": endpoint}):
            container.reset()
            settings = container.get_container().settings
            client = boto3.client("dynamodb", endpoint_url=endpoint)
            create_tables(client, settings)
            container.reset()
        yield endpoint
    finally:
        server.stop()


def token_minter(env: dict[str, str]) -> Callable[[], str]:
    """Tokens signed with the children's secret; each run gets its own user (no rate limit is hit)."""
    from kubilitics import container
    from kubilitics.auth.impersonation import DEVELOPMENT_ADMIN_GROUP
    from kubilitics.auth.tokens import SCOPES

    with environment(env):
        container.reset()
        codec = container.get_container().token_codec
        container.reset()
    users = itertools.count()

    def mint() -> str:
        token, _ = codec.mint(
            sub=f"bench-{next(users)}", scopes=SCOPES, now=time.time(), groups=[DEVELOPMENT_ADMIN_GROUP]
        )
        return token

    return mint


# --- running children -----------------------------------------------------------------------------


@dataclass
class Run:
    total_ms: float  # child's first line to the response
    cpu_ms: float  # the CPU time the child used in that window
    import_ms: float  # child's first line to the function module imported
    warm_call_ms: float  # the same event handled again, after the response
    gc_ms: float  # garbage collection before the response
    wall_ms: float  # the whole subprocess, interpreter start and exit included
    status: int | None
    anthropic: bool
    k8s_models_at_import: int
    body: str = ""


class Runner:
    def __init__(self, env: dict[str, str], mint: Callable[[], str], workdir: Path):
        self.env = env
        self.mint = mint
        self.workdir = workdir

    def event_file(self, event: Path) -> Path:
        """The event with a fresh bearer token where it has the REPLACE_ME placeholder."""
        target = self.workdir / f"{event.parent.name}-{event.name}"
        target.write_text(event.read_text().replace("REPLACE_ME", self.mint()))
        return target

    def command(self, target: Target, *python_flags: str) -> list[str]:
        event = self.event_file(target.event)
        return [sys.executable, *python_flags, str(CHILD), str(target.app), str(event)]

    def run(self, target: Target) -> Run:
        command = self.command(target)
        started = time.perf_counter()
        # cwd: the code folder, as in Lambda
        proc = subprocess.run(command, env=self.env, cwd=target.app.parent, capture_output=True, text=True)
        wall_ms = (time.perf_counter() - started) * 1000
        result = _result(proc, target)
        return Run(
            total_ms=result["total_ms"],
            cpu_ms=result["cpu_ms"],
            import_ms=result["import_ms"],
            warm_call_ms=result["warm_call_ms"],
            gc_ms=result["gc_ms"],
            wall_ms=wall_ms,
            status=result["status"],
            anthropic=result["anthropic"],
            k8s_models_at_import=result["k8s_models_at_import"],
            body=result.get("body", ""),
        )

    def import_profile(self, target: Target) -> dict[str, int]:
        """Module -> self import time in microseconds, from one run under `-X importtime`."""
        command = self.command(target, "-X", "importtime")
        env = {**self.env, "BENCH_GC_OFF": "1"}  # a collection's pause would count as some import's time
        proc = subprocess.run(command, env=env, cwd=target.app.parent, capture_output=True, text=True)
        _result(proc, target)
        return {
            match[2]: int(match[1])
            for match in re.finditer(r"^import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)$", proc.stderr, re.M)
        }


class ChildFailed(Exception):
    """A child exited without a result (the function is broken, or being edited right now)."""


def _result(proc: subprocess.CompletedProcess[str], target: Target) -> dict[str, Any]:
    marker = "BENCH_RESULT "
    lines = [line for line in proc.stdout.splitlines() if line.startswith(marker)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        raise ChildFailed(f"{target.label}: the child failed (exit {proc.returncode})\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1][len(marker) :])
    return result


def measure(
    runner: Runner, targets: list[Target], rounds: int, importtime: bool
) -> tuple[dict[Target, list[Run]], dict[Target, dict[str, int]], dict[Target, str]]:
    """Runs per target, import profiles, and the targets whose child failed (left out from then on)."""
    failed: dict[Target, str] = {}

    def attempt(action: Callable[[Target], Any], target: Target) -> Any:
        try:
            return action(target)
        except ChildFailed as exc:
            failed[target] = str(exc)
            return None

    for target in targets:  # unrecorded: writes .pyc files and warms the OS file cache
        attempt(runner.run, target)
    runs: dict[Target, list[Run]] = defaultdict(list)
    # Interleaved, and each round starting one target later, so that drift in the machine's load
    # and any effect of the order fall on functions and floors alike.
    for round_ in range(rounds):
        shift = round_ % len(targets)
        for target in targets[shift:] + targets[:shift]:
            if target not in failed and (run := attempt(runner.run, target)):
                runs[target].append(run)
    profiles = {}
    for target in targets if importtime else []:
        if target not in failed and (profile := attempt(runner.import_profile, target)):
            profiles[target] = profile
    return runs, profiles, failed


# --- the report -----------------------------------------------------------------------------------


@dataclass
class Figures:
    median_ms: float
    cpu_ms: float
    import_ms: float
    call_ms: float
    warm_call_ms: float
    gc_ms: float
    wall_ms: float
    status: str
    anthropic: bool
    k8s_models_at_import: int

    @classmethod
    def of(cls, runs: list[Run]) -> Figures:
        total = statistics.median(r.total_ms for r in runs)
        imported = statistics.median(r.import_ms for r in runs)
        return cls(
            median_ms=total,
            cpu_ms=statistics.median(r.cpu_ms for r in runs),
            import_ms=imported,
            call_ms=total - imported,
            warm_call_ms=statistics.median(r.warm_call_ms for r in runs),
            gc_ms=statistics.median(r.gc_ms for r in runs),
            wall_ms=statistics.median(r.wall_ms for r in runs),
            status="/".join(sorted({str(r.status) for r in runs})),
            anthropic=any(r.anthropic for r in runs),
            k8s_models_at_import=max(r.k8s_models_at_import for r in runs),
        )


def _row(case: Case, mine: Figures, floor: Figures) -> dict[str, Any]:
    ratio = mine.median_ms / floor.median_ms
    return {
        "function": case.function.label.split("/")[0],
        "event": case.function.event.name,
        "status": mine.status,
        "median_ms": round(mine.median_ms, 1),
        "cpu_ms": round(mine.cpu_ms, 1),
        "import_ms": round(mine.import_ms, 1),
        "call_ms": round(mine.call_ms, 1),
        "warm_call_ms": round(mine.warm_call_ms, 1),
        "gc_ms": round(mine.gc_ms, 1),
        "wall_ms": round(mine.wall_ms, 1),
        "floor": case.floor.label.removeprefix("floor:"),
        "floor_median_ms": round(floor.median_ms, 1),
        "floor_cpu_ms": round(floor.cpu_ms, 1),
        "floor_import_ms": round(floor.import_ms, 1),
        "floor_call_ms": round(floor.call_ms, 1),
        "floor_warm_call_ms": round(floor.warm_call_ms, 1),
        "floor_gc_ms": round(floor.gc_ms, 1),
        "floor_wall_ms": round(floor.wall_ms, 1),
        "ratio": round(ratio, 3),
        "cpu_ratio": round(mine.cpu_ms / floor.cpu_ms, 3),
        "wall_ratio": round(mine.wall_ms / floor.wall_ms, 3),
        "target_ratio": TARGET_RATIO,
        "within_target": ratio <= TARGET_RATIO,
        "anthropic_imported": mine.anthropic,
        "anthropic_allowed": case.ai,
        "k8s_models_imported_at_import": mine.k8s_models_at_import > 0,
    }


def print_columns(lines: list[tuple[str, ...]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for i, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * width for width in widths))


def print_table(rows: list[dict[str, Any]], floors: dict[str, Figures], runs: int) -> None:
    print(
        f"\nCold start, median of {runs} fresh processes: import the function module + handle one event.\n"
        "cold = the child's first line to the response = import + 1st call; 2nd call = the same event,\n"
        "warm (1st minus 2nd is the first call's cold overhead); gc = garbage collection before the\n"
        "response (part of cold); cpu = CPU time of the child in the cold window (all threads), a\n"
        "check on the ratio when other work loads the machine; wall = the whole subprocess.\n"
    )
    lines: list[tuple[str, ...]] = [
        (
            "function",
            "event",
            "status",
            "cold ms",
            "import",
            "1st call",
            "2nd call",
            "gc",
            "floor ms",
            "ratio",
            "target",
            "cpu ms",
            "floor cpu",
            "wall ms",
            "floor wall",
            "anthropic?",
            "k8s models?",
        )
    ]
    for row in rows:
        anthropic = "yes" if row["anthropic_imported"] else "no"
        if row["anthropic_imported"]:
            anthropic += " (AI, allowed)" if row["anthropic_allowed"] else " MUST NOT"
        lines.append(
            (
                row["function"],
                row["event"],
                row["status"],
                f"{row['median_ms']:.0f}",
                f"{row['import_ms']:.0f}",
                f"{row['call_ms']:.0f}",
                f"{row['warm_call_ms']:.0f}",
                f"{row['gc_ms']:.0f}",
                f"{row['floor_median_ms']:.0f}",
                f"{row['ratio']:.2f}x",
                f"<= {TARGET_RATIO:.2f}x " + ("ok" if row["within_target"] else "OVER"),
                f"{row['cpu_ms']:.0f}",
                f"{row['floor_cpu_ms']:.0f} ({row['cpu_ratio']:.2f}x)",
                f"{row['wall_ms']:.0f}",
                f"{row['floor_wall_ms']:.0f} ({row['wall_ratio']:.2f}x)",
                anthropic,
                "yes MUST NOT" if row["k8s_models_imported_at_import"] else "no",
            )
        )
    print_columns(lines)
    print()
    lines = [("floor", "status", "cold ms", "import", "1st call", "2nd call", "gc", "cpu ms", "wall ms")]
    for name, floor in floors.items():
        lines.append(
            (
                name,
                floor.status,
                f"{floor.median_ms:.0f}",
                f"{floor.import_ms:.0f}",
                f"{floor.call_ms:.0f}",
                f"{floor.warm_call_ms:.0f}",
                f"{floor.gc_ms:.0f}",
                f"{floor.cpu_ms:.0f}",
                f"{floor.wall_ms:.0f}",
            )
        )
    print_columns(lines)


def _group(module: str) -> str:
    # our own modules one by one (that is where the fix goes); third-party ones by package
    return module if module.startswith("kubilitics.") else module.split(".")[0]


def print_extra_imports(case: Case, mine: dict[str, int], floor: dict[str, int]) -> dict[str, Any]:
    extra = {module: us for module, us in mine.items() if module not in floor}
    groups: dict[str, int] = defaultdict(int)
    for module, us in extra.items():
        groups[_group(module)] += us
    top = sorted(groups.items(), key=lambda item: -item[1])[:8]
    total_ms = sum(extra.values()) / 1000
    listed = ", ".join(f"{name} {us / 1000:.1f}" for name, us in top)
    print(f"  {case.function.label}: +{total_ms:.0f} ms in {len(extra)} modules; largest: {listed}")
    return {"extra_import_ms": round(total_ms, 1), "largest": {name: round(us / 1000, 1) for name, us in top}}


def report(
    cases: list[Case],
    runs: dict[Target, list[Run]],
    profiles: dict[Target, dict[str, int]],
    failed: dict[Target, str],
    rounds: int,
) -> dict[str, Any]:
    """Prints the tables; returns the same figures for the JSON line."""
    for error in failed.values():
        print(f"FAILED {error}")
    cases = [case for case in cases if case.function not in failed and case.floor not in failed]
    figures = {target: Figures.of(target_runs) for target, target_runs in runs.items() if target_runs}
    rows = [_row(case, figures[case.function], figures[case.floor]) for case in cases]
    floors = {case.floor.label.removeprefix("floor:"): figures[case.floor] for case in cases}
    print_table(rows, floors, rounds)
    for target, target_runs in runs.items():
        odd = [run for run in target_runs if not (run.status and 200 <= run.status < 300)]
        if odd:
            share = f"{len(odd)} of {len(target_runs)} runs"
            print(f"warning: {target.label} answered {odd[0].status} in {share}:")
            print(f"  {odd[0].body}")
    if profiles:
        print(
            "\nImports the floor does not make (self ms; one run under -X importtime, which inflates them,"
            " with the garbage collector off):"
        )
        for case, row in zip(cases, rows, strict=True):
            if case.function in profiles and case.floor in profiles:
                extra = print_extra_imports(case, profiles[case.function], profiles[case.floor])
                row["imports_beyond_floor"] = extra
    return {
        "benchmark": "cold_start",
        "runs": rounds,
        "target_ratio": TARGET_RATIO,
        "results": rows,
        "floors": {
            name: {
                "median_ms": round(floor.median_ms, 1),
                "cpu_ms": round(floor.cpu_ms, 1),
                "import_ms": round(floor.import_ms, 1),
                "call_ms": round(floor.call_ms, 1),
                "warm_call_ms": round(floor.warm_call_ms, 1),
                "gc_ms": round(floor.gc_ms, 1),
                "wall_ms": round(floor.wall_ms, 1),
                "status": floor.status,
            }
            for name, floor in floors.items()
        },
        "failed": [error.splitlines()[0] for error in failed.values()],
    }


# --- entry point ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cold_start", description=__doc__)
    parser.add_argument("functions", nargs="*", help="only these functions (default: all that work)")
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs per function (default {RUNS})")
    parser.add_argument("--kubeconfig", type=Path, default=TESTBED_KUBECONFIG)
    parser.add_argument("--no-importtime", action="store_true", help="skip the -X importtime comparison")
    args = parser.parse_args(argv)

    cases, notes = discover(args.functions)
    for note in notes:
        print(f"note: {note}")
    if not cases:
        print("cold_start: no function to measure")
        return 0
    problem = check_cluster(args.kubeconfig.resolve())
    if problem:
        print(f"cold_start: {problem}; start the test cluster with `make testbed-up`", file=sys.stderr)
        return 2

    for note in ensure_event_pods(args.kubeconfig.resolve(), cases):
        print(f"note: {note}")
    base_env = child_env(args.kubeconfig.resolve())
    floors = list(dict.fromkeys(case.floor for case in cases))
    targets = floors + [case.function for case in cases]
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    with dynamodb_server(base_env) as endpoint, tempfile.TemporaryDirectory() as workdir:
        env = {**base_env, "KUBILITICS_AWS_ENDPOINT_URL": endpoint}
        runner = Runner(env, token_minter(env), Path(workdir))
        runs, profiles, failed = measure(runner, targets, args.runs, importtime=not args.no_importtime)

    load = max(load_before, os.getloadavg()[0])
    elapsed = time.perf_counter() - started
    summary = report(cases, runs, profiles, failed, args.runs)
    print(f"\n({elapsed:.0f} s; load average up to {load:.1f}, {os.cpu_count()} CPUs)")
    if load > (os.cpu_count() or 1) - 1:  # the benchmark itself keeps about one CPU busy
        print("warning: other work was running: the times are inflated and the ratios less reliable")
    summary.update(skipped=notes, load_average=round(load, 2), cpus=os.cpu_count())
    print(json.dumps(summary))
    return 0
