"""`make lambda-test`: every function as `sam build` built it, on the Lambda runtime (issue 14).

1. `sam build` without Docker (scripts/sam/build.sh) into a scratch directory.
2. Packaging limits (limits.py): size with layers under 250 MB, no development dependency in a
   layer, binaries and wheel tags for the template's architecture.
3. The runtime (install.sh): the Runtime Interface Emulator built from its Go module, awslambdaric in
   a python3.11 of its own; the local stack (stack.py: moto, the test cluster's kubeconfig as the
   kubeconfig secret); a probe shows the runtime imports nothing from the development venv.
4. Each function with the template's Handler, Runtime, MemorySize, Timeout and Environment, its build
   directory as the task root and its layers as /opt: every events/<function>/*.json invoked through
   the emulator's invoke endpoint and its answer checked (cases.py), HTTP events once more without a
   token (the standard 401 error body); then more cold starts, each a new emulator process.
5. Init Duration as the emulator reports it (median of the cold starts) beside `bench cold_start`'s
   in-process figures for the same function.
Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lambda_runtime import cases, limits, seed, stack, template
from tests.lambda_runtime.emulator import Emulator, Runtime, lambda_environment, lay_out_opt

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EVENTS = REPO / "events"
COLD_STARTS = 5
STACK_NAME = "kubilitics-lambda-test"
# The watch relay runs until it has been idle for 60 s: its first environment runs in the background
# while the next functions are tested; its other cold starts find the lease held (status standby).
BACKGROUND = {"watch_relay"}


@dataclass
class Outcome:
    function: str
    logical_id: str
    memory_mb: int
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    init_ms: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    pending: concurrent.futures.Future[None] | None = None


class Run:
    """The state shared by the functions' runs: the stack, tokens, the runtime, scratch space."""

    def __init__(
        self, local: stack.LocalStack, runtime: Runtime, work: Path, cold_starts: int, verbose: bool
    ):
        from kubilitics.auth.impersonation import DEVELOPMENT_ADMIN_GROUP
        from kubilitics.auth.tokens import SCOPES, TokenCodec

        self.local, self.runtime, self.work = local, runtime, work
        self.cold_starts, self.verbose = cold_starts, verbose
        self.codec, self.scopes, self.groups = (
            TokenCodec(secret=local.jwt_secret),
            SCOPES,
            [DEVELOPMENT_ADMIN_GROUP],
        )
        self.opts: dict[tuple[str, ...], Path] = {}
        self.background = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="background")
        self.emulators: list[Emulator] = []  # every one started, stopped at the end whatever happens

    def token(self, function: str) -> str:
        token, _ = self.codec.mint(
            sub=f"lambda-test-{function}",
            scopes=self.scopes,
            token_type="user",
            now=time.time(),
            groups=self.groups,
        )
        return token

    def opt(self, layers: dict[str, template.Layer], function: template.Function) -> Path:
        """The /opt of a function: its layers extracted in order (shared by functions with the same)."""
        if function.layers not in self.opts:
            path = self.work / f"opt-{len(self.opts)}"
            lay_out_opt([layers[layer] for layer in function.layers], path)
            self.opts[function.layers] = path
        return self.opts[function.layers]

    def emulator(self, function: template.Function, env: dict[str, str], **kwargs: Any) -> Emulator:
        log = self.work / f"{function.folder}-{len(self.emulators) + 1}.log"
        self.emulators.append(Emulator(function, self.runtime, env, log, **kwargs))
        return self.emulators[-1]

    def stop(self) -> None:
        for emulator in self.emulators:
            emulator.stop()
        self.background.shutdown()


def posted(connection_id: str) -> list[dict[str, Any]]:
    """Every message post_to_connection delivered to the connection (moto runs in this process)."""
    from urllib.parse import quote

    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    backend = apigatewaymanagementapi_backends[stack.ACCOUNT][stack.REGION]
    key = next((k for k in (connection_id, quote(connection_id, safe="")) if k in backend.connections), None)
    data = backend.connections[key].data.decode() if key else ""
    decoder, messages, at = json.JSONDecoder(), [], 0
    while at < len(data):
        message, at = decoder.raw_decode(data, at)
        messages.append(message)
    return messages


def invoke_and_check(
    run: Run,
    emulator: Emulator,
    function: str,
    name: str,
    event: dict[str, Any],
    expect: cases.Expect,
    outcome: Outcome,
) -> Any:
    connection = event.get("requestContext", {}).get("connectionId")
    before = len(posted(connection)) if connection else 0
    answer = emulator.invoke(event)
    new = posted(connection)[before:] if connection else []
    problems = (
        cases.check(expect, event, answer.payload, new)
        if answer.status == 200
        else [f"the emulator answered {answer.status}: {str(answer.payload)[:200]}"]
    )
    outcome.checked += 1
    outcome.problems += [f"{name}: {problem}" for problem in problems]
    if run.verbose or problems:
        summary = answer.payload.get("statusCode", "") if isinstance(answer.payload, dict) else ""
        print(f"  {function}/{name}: {'FAIL' if problems else 'ok'} {summary} ({answer.seconds:.2f} s)")
    return answer.payload


def events_of(function: template.Function, outcome: Outcome) -> dict[str, cases.Expect]:
    files = {path.name for path in (EVENTS / function.folder).glob("*.json")}
    expected = cases.EXPECTATIONS.get(function.folder, {})
    for name in sorted(files - set(expected)):
        outcome.problems.append(f"events/{function.folder}/{name} has no expectation in cases.py")
    for name in sorted(set(expected) - files):
        outcome.problems.append(f"cases.py expects events/{function.folder}/{name}, which does not exist")
    if not files:
        outcome.problems.append(f"events/{function.folder}/ has no event")
    return {name: expect for name, expect in expected.items() if name in files}


def first_environment(
    run: Run, emulator: Emulator, expected: dict[str, cases.Expect], outcome: Outcome
) -> None:
    """Every event of the function, in order, in one environment (its first cold start)."""
    function = emulator.function
    answers: dict[str, Any] = {}
    with emulator:
        for name, expect in expected.items():
            event = cases.load(EVENTS / function.folder / name, run.token(function.folder))
            if expect.chain:  # as the state machine passes the state on
                own = event.get("state", {})
                event["state"] = {**answers[expect.chain], **{k: own[k] for k in expect.keep if k in own}}
            answers[name] = invoke_and_check(run, emulator, function.folder, name, event, expect, outcome)
        http = next((name for name in expected if cases.needs_token(EVENTS / function.folder / name)), None)
        if http:  # bad input: no token -> 401 with the standard error body
            event = cases.load(EVENTS / function.folder / http, None)
            invoke_and_check(
                run,
                emulator,
                function.folder,
                f"{http} without a token",
                event,
                cases.Expect(401, error="unauthorized"),
                outcome,
            )
        outcome.init_ms.insert(0, emulator.init_ms() or float("nan"))
        outcome.peak_rss_mb = emulator.peak_rss_mb()


def run_function(run: Run, function: template.Function, layers: dict[str, template.Layer]) -> Outcome:
    outcome = Outcome(function.folder, function.logical_id, function.memory_mb)
    expected = events_of(function, outcome)
    if not expected:
        return outcome
    env = lambda_environment(
        function,
        run.runtime,
        run.opt(layers, function),
        run.local.environment(function.environment),
        run.local.endpoint,
    )
    first = run.emulator(function, env)
    if function.folder in BACKGROUND:
        outcome.pending = run.background.submit(first_environment, run, first, expected, outcome)
        deadline = time.monotonic() + 60  # until its init is done and its run has the lease
        while time.monotonic() < deadline and not (
            first.log_path.exists() and "INIT REPORT" in first.log_path.read_text(errors="replace")
        ):
            time.sleep(0.2)
        time.sleep(1.0)
    else:
        first_environment(run, first, expected, outcome)

    cold_name, override = cases.COLD_EVENTS.get(function.folder, (next(iter(expected)), {}))
    for _ in range(run.cold_starts - 1):
        event = cases.merge(
            cases.load(EVENTS / function.folder / cold_name, run.token(function.folder)), override
        )
        with run.emulator(function, env) as emulator:
            answer = emulator.invoke(event)
            if answer.status != 200 or (isinstance(answer.payload, dict) and "errorType" in answer.payload):
                outcome.problems.append(f"cold start with {cold_name}: {str(answer.payload)[:200]}")
            outcome.init_ms.append(emulator.init_ms() or float("nan"))
    return outcome


# --- nothing from the development venv -------------------------------------------------------------


def isolation(run: Run, functions: list[template.Function], layers: dict[str, template.Layer]) -> list[str]:
    """Runs probe.py in an environment like the first function's; prints its sys.path; problems."""
    function = functions[0]
    opt = run.work / "opt-probe"
    lay_out_opt([layers[layer] for layer in function.layers], opt)
    shutil.copy(HERE / "probe.py", opt / "python" / "kubilitics_lambda_probe.py")
    env = lambda_environment(
        function, run.runtime, opt, run.local.environment(function.environment), run.local.endpoint
    )
    with run.emulator(function, env, handler="kubilitics_lambda_probe.handler") as emulator:
        answer = emulator.invoke({"task_roots": {f.folder: str(f.code) for f in functions}}).payload
    if not isinstance(answer, dict) or "path" not in answer:
        return [f"the isolation probe failed: {str(answer)[:300]}"]
    runtime_prefix = Path(answer["prefix"])
    names = {
        str(function.code): "<task root>",
        str(opt): "<opt>",
        str(run.runtime.runtime_dir): "<runtime dir: boto3>",
        str(runtime_prefix): "<runtime venv: awslambdaric>",
        str(Path(os.path.realpath(sys.base_prefix))): "<python3.11 stdlib>",
    }
    allowed = [str(f.code) for f in functions] + list(names)

    def label(path: str) -> str:
        for root, name in names.items():
            if path == root or path.startswith(root + "/"):
                return name + path[len(root) :]
        return path

    print(f"runtime: {answer['executable']} (python{answer['version']}, prefix {runtime_prefix})")
    print("sys.path inside the runtime:\n  " + "\n  ".join(label(p) for p in answer["path"]))
    forbidden = [str(Path(sys.prefix)), str(REPO / "shared"), str(REPO / "functions")]
    problems = []
    if answer["version"] != function.runtime.removeprefix("python"):
        problems.append(f"the runtime is python{answer['version']}, the template says {function.runtime}")
    for entry in answer["path"]:
        if any(entry == bad or entry.startswith(bad + "/") for bad in forbidden):
            problems.append(f"sys.path has {entry} (the development tree or venv)")
    outside = sorted(
        f"{module} from {path}"
        for module, path in answer["files"].items()
        if not any(os.path.realpath(path).startswith(os.path.realpath(root) + "/") for root in allowed)
    )
    problems += [f"module {entry} (not the runtime, the task roots or the layers)" for entry in outside]
    print(
        f"{len(answer['files'])} modules loaded by importing all {len(functions)} function modules: "
        + (
            "every one from the task roots, /opt, the runtime or the stdlib"
            if not outside
            else f"{len(outside)} from elsewhere"
        )
    )
    return problems


# --- bench cold_start, for comparison ----------------------------------------------------------------


def bench_figures(folders: list[str], runs: int) -> dict[str, dict[str, Any]]:
    """`bench cold_start`'s rows per function (it measures the FastAPI functions only)."""
    command = [sys.executable, "-m", "bench", "cold_start", "--runs", str(runs), "--no-importtime", *folders]
    print(f"\n$ {' '.join(['python', *command[1:]])}", flush=True)
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"bench cold_start failed (exit {proc.returncode}): {proc.stderr[-500:]}")
        return {}
    return {row["function"]: row for row in json.loads(lines[-1])["results"]}


# --- report --------------------------------------------------------------------------------------


def print_table(outcomes: list[Outcome], bench: dict[str, dict[str, Any]], cold_starts: int) -> None:
    print(
        f"\ninit ms: Init Duration as the emulator reports it (INIT REPORT), median of {cold_starts} cold "
        "starts, each a new\n  emulator and runtime process; the bytecode compiled at build, none written, "
        "as on Lambda's read-only /var/task and /opt.\nbench: `bench cold_start` in-process for the same "
        "function, median of "
        f"{cold_starts} (import = interpreter start\n  to module imported; cold = import + first event); "
        "it measures the FastAPI functions only.\n"
    )
    header = (
        "function",
        "checked",
        "init ms",
        "min-max",
        "bench import",
        "bench cold",
        "peak RSS / memory",
        "result",
    )
    rows = [header]
    for o in outcomes:
        inits = [ms for ms in o.init_ms if ms == ms]  # NaN: no report
        row = bench.get(o.function)
        rows.append(
            (
                o.function,
                str(o.checked),
                f"{statistics.median(inits):.0f}" if inits else "-",
                f"{min(inits):.0f}-{max(inits):.0f}" if inits else "-",
                f"{row['import_ms']:.0f}" if row else "-",
                f"{row['median_ms']:.0f}" if row else "-",
                f"{o.peak_rss_mb:.0f} / {o.memory_mb} MB" if o.peak_rss_mb else f"- / {o.memory_mb} MB",
                "ok" if not o.problems else f"FAIL ({len(o.problems)})",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, r in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def sam_build() -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "sam" / "build.sh")],
        cwd=REPO,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return Path(out.strip().splitlines()[-1])  # the scratch directory; the build is in build/


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lambda_runtime",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("functions", nargs="*", help="only these (folders of functions/); default all")
    parser.add_argument("--build-dir", type=Path, help="a `sam build` output (with template.yaml) to reuse")
    parser.add_argument(
        "--cold-starts", type=int, default=COLD_STARTS, help=f"per function (default {COLD_STARTS})"
    )
    parser.add_argument("--no-bench", action="store_true", help="skip the bench cold_start comparison")
    parser.add_argument("--kubeconfig", type=Path, default=REPO / ".testbed" / "kubeconfig")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every invocation")
    args = parser.parse_args(argv)
    # SIGTERM (CI's timeout, kill) unwinds like an exception: emulators stopped, seeded pods deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    if args.build_dir:
        build = args.build_dir.resolve()
        return test(args, build if (build / "template.yaml").is_file() else build / "build", started)
    scratch = sam_build()
    try:
        return test(args, scratch / "build", started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test(args: argparse.Namespace, build: Path, started: float) -> int:
    problems: list[str] = []
    document = template.load(build / "template.yaml")
    functions = template.functions(document, build, template.load(REPO / "template.yaml"))
    layers = template.layers(document, build)
    order = list(cases.EXPECTATIONS)
    problems += [f"{f.logical_id}: no expectations in cases.py" for f in functions if f.folder not in order]
    functions.sort(key=lambda f: order.index(f.folder) if f.folder in order else len(order))
    chosen = [f for f in functions if not args.functions or f.folder in args.functions]

    print(f"== packaging ({build})")
    lines, found = limits.check(functions, layers, REPO)
    print("\n".join(lines))
    problems += found

    from bench.cold_start import check_cluster

    if reason := check_cluster(args.kubeconfig.resolve()):
        print(f"lambda-test: {reason}; start the test cluster with `make testbed-up`", file=sys.stderr)
        return 2
    print(f"({time.perf_counter() - started:.0f} s so far)\n\n== the Lambda runtime")
    runtime = Runtime.install(HERE / "install.sh")
    print(f"emulator: {runtime.rie}")
    outcomes: list[Outcome] = []
    with (
        tempfile.TemporaryDirectory(prefix="kubilitics-lambda-test-") as scratch,
        stack.running(document, build, args.kubeconfig.resolve(), STACK_NAME) as local,
        seed.cluster_objects(args.kubeconfig.resolve()) as notes,
    ):
        for note in notes:
            print(f"note: {note}")
        run = Run(local, runtime, Path(scratch), args.cold_starts, args.verbose)
        try:
            problems += isolation(run, functions, layers)
            context = seed.current_context(args.kubeconfig.resolve())
            tasks = json.loads((EVENTS / "investigation_tasks" / "gather.json").read_text())
            seed.investigation(local, tasks["investigation_id"], tasks["state"]["resource"], context)
            print(f"\n== {len(chosen)} functions, {args.cold_starts} cold starts each")
            for function in chosen:
                print(
                    f"{function.folder} ({function.logical_id}: {function.handler}, {function.runtime}, "
                    f"{function.memory_mb} MB, {function.timeout_s} s)",
                    flush=True,
                )
                outcomes.append(run_function(run, function, layers))
            for outcome in outcomes:
                if outcome.pending is not None:
                    outcome.pending.result()
        finally:
            run.stop()
    print(f"({time.perf_counter() - started:.0f} s so far)")
    bench = {} if args.no_bench else bench_figures([o.function for o in outcomes], args.cold_starts)
    print_table(outcomes, bench, args.cold_starts)
    problems += [f"{o.function}: {p}" for o in outcomes for p in o.problems]
    for o in outcomes:
        if o.peak_rss_mb and o.peak_rss_mb > o.memory_mb:
            problems.append(
                f"{o.function}: peak RSS {o.peak_rss_mb:.0f} MB over its MemorySize {o.memory_mb} MB"
            )
    print(
        f"\n{sum(o.checked for o in outcomes)} invocations checked in {time.perf_counter() - started:.0f} s"
    )
    for problem in problems:
        print(f"FAIL {problem}")
    print("lambda-test: " + ("ok" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
