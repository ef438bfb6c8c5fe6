"""simexec: what `kubectl exec` runs in the testbed (test harness, not product).

kwok (patched at build time, scripts/testbed/kwok-patch/exec_wrapper.go) runs
    simexec.py <namespace> <pod> <container> -- <command...>
instead of the command itself, so an exec never reaches the host: the command runs in the
simulated shell (simshell.py) with the container's image, environment and files as nodesim
recorded them when the container started (<state>/exec/<namespace>_<pod>/<container>.json), and
the cluster's Services as nodesim last saw them (<state>/run/net.json). Output, stdin, a terminal
(`kubectl exec -it ... sh`: prompt, `stty size`) and the exit code behave as on a node. Standard
library only, so it starts fast.

Environment (set by the ClusterExec in manifests/kwok-defaults.yaml): KUBILITICS_TESTBED_STATE.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import simshell  # noqa: E402 - next to this file

OCI = "OCI runtime exec failed: exec failed: unable to start container process: "


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print("usage: simexec.py NAMESPACE POD CONTAINER -- COMMAND...", file=sys.stderr)
        return 2
    namespace, pod, container, command = argv[0], argv[1], argv[2], argv[4:]
    state = Path(os.environ.get("KUBILITICS_TESTBED_STATE", Path(__file__).resolve().parents[2] / ".testbed"))
    ctx_file = state / "exec" / f"{namespace}_{pod}" / f"{container}.json"
    try:
        ctx = json.loads(ctx_file.read_text())
    except (OSError, ValueError):
        ctx = None
    if ctx is None and (state / "run" / "nodesim.pid").exists():
        # nodesim plays this node and has not started the container (or it stopped): as containerd.
        print("OCI runtime exec failed: exec failed: cannot exec in a stopped container: unknown", file=sys.stderr)
        return 126
    if ctx is not None and not ctx.get("running"):
        print("OCI runtime exec failed: exec failed: cannot exec in a stopped container: unknown", file=sys.stderr)
        return 126
    ctx = ctx or {}  # pods left to kwok's own stages (no nodesim): a busybox-like container
    try:
        snapshot = json.loads((state / "run" / "net.json").read_text())
    except (OSError, ValueError):
        snapshot = {}
    img = ctx.get("image") or {"binaries": ["*shell*"]}
    if not simshell.has_binary(img, command[0]):
        exe = command[0]
        why = f"stat {exe}: no such file or directory" if "/" in exe else "executable file not found in $PATH"
        print(f'{OCI}exec: "{exe}": {why}: unknown', file=sys.stderr)
        return 126

    def write(stream: str, text: str) -> None:
        out = sys.stdout if stream == "stdout" else sys.stderr
        out.write(text)
        out.flush()

    # The files as the container's own command has left them by now (it may have written some).
    started = float(ctx.get("started_at") or time.time())
    recorded = simshell.Container(
        files=dict(ctx.get("files") or {}), history=[tuple(h) for h in ctx.get("history") or []]
    )
    net = ctx.get("net") or {}
    box = simshell.Container(
        img=img,
        env=dict(ctx.get("env") or {"HOSTNAME": pod, "PATH": "/usr/local/bin:/usr/bin:/bin"}),
        files=recorded.files_at(time.time() - started),
        net=simshell.Network(
            snapshot, net.get("namespace", namespace), net.get("own_ip", ""), pod, net.get("own_ports")
        ),
        live=True,
        write=write,
        stdin=iter(sys.stdin.readline, ""),
    )
    box.dirs.update(ctx.get("dirs") or [])
    result = simshell.run_argv(command, box)
    return result.code if result.code is not None else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
