"""One cold start, in a fresh interpreter: `python bench/child.py <app.py> <event.json>`.

Imports the app module the way the Lambda runtime does (its folder first on sys.path, `import app`),
hands it one event, and prints one line `BENCH_RESULT {json}` with the timings and what was imported.
Run as a script, not with -m: `-m bench.child` would import the bench package first and time it too.
"""

# ruff: noqa: E402 - the clock must start before anything else is imported
import time

STARTED = time.perf_counter()
CPU_STARTED = time.process_time()  # CPU time, all threads: less moved than wall time by other load

import gc
import importlib
import json
import os
import sys
import uuid
from pathlib import Path

RESULT_MARKER = "BENCH_RESULT "
gc_ms = 0.0  # time in garbage collection: its pauses grow with every object the imports create
_gc_started = 0.0


def _time_gc(phase: str, info: dict[str, int]) -> None:
    global gc_ms, _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    else:
        gc_ms += (time.perf_counter() - _gc_started) * 1000


gc.callbacks.append(_time_gc)
if os.environ.get("BENCH_GC_OFF"):  # for -X importtime: pauses would land on whichever import is running
    gc.disable()


class LambdaContext:
    """The attributes Powertools' inject_lambda_context and Mangum read."""

    function_name = "kubilitics-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:kubilitics-bench"
    aws_request_id = str(uuid.uuid4())
    log_group_name = "/aws/lambda/kubilitics-bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def imported(prefix: str) -> list[str]:
    return sorted(name for name in sys.modules if name == prefix or name.startswith(prefix + "."))


def main() -> None:
    app_path, event_path = Path(sys.argv[1]), Path(sys.argv[2])
    sys.path[0] = str(app_path.parent)  # replaces bench/, as the runtime puts the code folder first
    module = importlib.import_module(app_path.stem)
    imported_at = time.perf_counter()
    # Checked before the first event: what the module costs every cold start, whatever the route.
    anthropic_at_import = bool(imported("anthropic"))
    k8s_models_at_import = imported("kubernetes.client.models")

    event = json.loads(event_path.read_text())
    response = module.handler(event, LambdaContext())
    answered = time.perf_counter()
    cpu_ms = (time.process_time() - CPU_STARTED) * 1000
    gc_until_answered = gc_ms
    # After the timed window: the same event again, warm. What the first call costs beyond this is
    # cold-start overhead (lazy imports, clients, TLS handshakes); the rest is the route's own work.
    module.handler(json.loads(event_path.read_text()), LambdaContext())
    warm_ms = (time.perf_counter() - answered) * 1000

    result = {
        "import_ms": (imported_at - STARTED) * 1000,
        "total_ms": (answered - STARTED) * 1000,
        "cpu_ms": cpu_ms,
        "warm_call_ms": warm_ms,
        "gc_ms": gc_until_answered,
        "status": response.get("statusCode"),
        "anthropic_at_import": anthropic_at_import,
        "anthropic": bool(imported("anthropic")),
        "k8s_models_at_import": len(k8s_models_at_import),
    }
    if not isinstance(result["status"], int) or not 200 <= result["status"] < 300:
        result["body"] = str(response.get("body", ""))[:500]
    print(RESULT_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
