"""One cold start, in a fresh interpreter: `python bench/child.py <app.py> <event.json>`.

Imports the app module the way the Lambda runtime does (its folder first on sys.path, `import app`),
hands it one event, and prints one line `BENCH_RESULT {json}` with the timings and what was imported.
Run as a script, not with -m: `-m bench.child` would import the bench package first and time it too.
"""

# ruff: noqa: E402 - the clock must start before anything else is imported
import time

STARTED = time.perf_counter()

import importlib
import json
import sys
import uuid
from pathlib import Path

RESULT_MARKER = "BENCH_RESULT "


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
    modules_at_import = len(sys.modules)
    k8s_models_at_import = imported("kubernetes.client.models")

    event = json.loads(event_path.read_text())
    response = module.handler(event, LambdaContext())
    answered = time.perf_counter()

    result = {
        "import_ms": (imported_at - STARTED) * 1000,
        "total_ms": (answered - STARTED) * 1000,
        "status": response.get("statusCode"),
        "anthropic_at_import": anthropic_at_import,
        "anthropic": bool(imported("anthropic")),
        "k8s_models_at_import": len(k8s_models_at_import),
        "modules_at_import": modules_at_import,
    }
    if result["status"] is None or result["status"] >= 500:
        result["body"] = str(response.get("body", ""))[:500]
    print(RESULT_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
