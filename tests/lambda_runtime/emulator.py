"""One function on the Lambda runtime: the Runtime Interface Emulator running awslambdaric in the
runtime's own python3.11, with the task root and /opt laid out as Lambda lays them out.

Lambda's python3.11 runtime runs with cwd /var/task, PYTHONPATH=/var/runtime, and puts the layer
paths in front: sys.path is /var/task, /opt/python/lib/python3.11/site-packages, /opt/python,
/var/runtime, then the interpreter's own. Here: the function's build directory, a scratch directory
standing in for /opt (every layer's content extracted into it, in the template's order), and the
runtime directory of install.sh (boto3/botocore); `python -m awslambdaric` puts the cwd first.
Nothing comes from the development venv: the environment is built from scratch (env -i).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lambda_runtime.stack import REGION, free_port
from tests.lambda_runtime.template import Function, Layer

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
# The emulator's REPORT line has an "Init Duration" that times only its asynchronous Init call (well
# under 1 ms); the runtime's init as the emulator measures it is its "INIT REPORT" log line.
INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
# No event here should take longer (the watch relay's run: 60 s idle, then it ends).
MAX_INVOKE_SECONDS = 120.0


@dataclass(frozen=True)
class Runtime:
    """What install.sh built: the emulator, the runtime's python, its /var/runtime stand-in."""

    rie: Path
    python: Path
    runtime_dir: Path

    @classmethod
    def install(cls, script: Path) -> Runtime:
        out = subprocess.run(["bash", str(script)], check=True, stdout=subprocess.PIPE, text=True).stdout
        found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return cls(Path(found["RIE"]), Path(found["PYTHON"]), Path(found["RUNTIME_DIR"]))


def lay_out_opt(layers: list[Layer], opt: Path) -> None:
    """Every layer's content into `opt` in order, a later layer's files over an earlier one's, as Lambda
    extracts them into /opt. Hard links (same file system) make this instant; copies otherwise."""

    def place(source: str, target: str) -> None:
        if os.path.lexists(target):
            os.unlink(target)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    opt.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        shutil.copytree(layer.content, opt, copy_function=place, dirs_exist_ok=True, symlinks=True)


def lambda_environment(
    function: Function, runtime: Runtime, opt: Path, variables: dict[str, str], aws_endpoint: str
) -> dict[str, str]:
    """The environment Lambda gives the runtime (reserved variables), plus the function's own
    variables, plus the one addition the local stack needs: the AWS endpoint (moto)."""
    name = f"lambda-test-{function.logical_id}"
    python = function.runtime.removeprefix("python")
    task = str(function.code)
    return {
        "PATH": f"{runtime.python.parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": task,
        "LAMBDA_RUNTIME_DIR": str(runtime.runtime_dir),
        "PYTHONPATH": f"{opt}/python/lib/python{python}/site-packages:{opt}/python:{runtime.runtime_dir}",
        "LD_LIBRARY_PATH": f"{runtime.runtime_dir}:{runtime.runtime_dir}/lib:{task}:{task}/lib:{opt}/lib",
        # /var/task and /opt are read-only on Lambda: only the bytecode compiled at build is there.
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",  # Lambda's user has no site-packages of its own
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout_s),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "lambda-test",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_ACCESS_KEY_ID": "lambda-test",
        "AWS_SECRET_ACCESS_KEY": "lambda-test",
        "AWS_SESSION_TOKEN": "lambda-test",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        **variables,
        "KUBILITICS_AWS_ENDPOINT_URL": aws_endpoint,
    }


@dataclass
class Answer:
    status: int  # the emulator's HTTP status (200 also for a function error, as Lambda's Invoke API)
    payload: Any  # the function's result (or Lambda's error object), JSON-decoded
    seconds: float


@dataclass
class Emulator:
    """One execution environment: started cold, reused for invocations until stopped."""

    function: Function
    runtime: Runtime
    env: dict[str, str]
    log_path: Path
    handler: str | None = None  # default: the template's Handler
    cwd: Path | None = None  # default: the task root
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Emulator:
        self.port = free_port()
        command = [
            str(self.runtime.rie),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.port}",
            "--runtime-api-address",
            f"127.0.0.1:{free_port()}",
            str(self.runtime.python),
            "-m",
            "awslambdaric",
            self.handler or self.function.handler,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.cwd or self.function.code,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the runtime with it
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the emulator did not start; see {self.log_path}") from None
                time.sleep(0.02)

    def invoke(self, event: Any, max_seconds: float = MAX_INVOKE_SECONDS) -> Answer:
        """One invocation; no answer within `max_seconds` (or the function's Timeout, if shorter) is an
        Answer with status 0, and the environment is stopped."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{INVOKE_PATH}", data=json.dumps(event).encode(), method="POST"
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(
                request, timeout=min(self.function.timeout_s + 5, max_seconds)
            ) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except TimeoutError:
            self.stop()
            status, body = 0, f"no answer within {max_seconds:.0f} s".encode()
        except (OSError, http.client.HTTPException) as exc:  # the emulator went away
            status, body = 0, f"no answer: {exc!r}".encode()
        seconds = time.perf_counter() - started
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = body.decode(errors="replace")
        return Answer(status, payload, seconds)

    def init_ms(self) -> float | None:
        """The emulator's report of the runtime's init (this environment's cold start)."""
        found = INIT_REPORT.findall(self.log_path.read_text(errors="replace"))
        return float(found[-1]) if found else None

    def runtime_pid(self) -> int | None:
        """The runtime process (the emulator's child)."""
        if self.process is None:
            return None
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            with_children = (task / "children").read_text().split() if (task / "children").exists() else []
            if with_children:
                return int(with_children[0])
        return None

    def peak_rss_mb(self) -> float | None:
        """The runtime process's peak resident memory (VmHWM), what Lambda's memory limit applies to."""
        pid = self.runtime_pid()
        try:
            status = Path(f"/proc/{pid}/status").read_text() if pid else ""
        except OSError:
            return None
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        return int(match[1]) / 1024 if match else None

    def stop(self) -> None:
        """Ends the emulator and the runtime (its process group) at once, as Lambda ends an environment."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
