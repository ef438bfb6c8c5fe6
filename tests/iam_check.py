"""`make iam-check`: per Lambda function, the AWS calls its code made in the integration tests against
what its role in template.yaml allows, and the grants that no call used.

    python -m tests.iam_check                 # run tests/integration recording the calls, then report
    python -m tests.iam_check --from FILE     # report on a recording (pytest ... --iam-record FILE)

Exit status 1 when any recorded call is not allowed (or the test run failed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from tests import sam_template
from tests.iam_recorder import Call, verdict

REPO = Path(__file__).resolve().parents[1]
PYTEST = [sys.executable, "-m", "pytest", "-q", "-rR", "--reruns", "2", "--reruns-delay", "3"]


def load(path: Path) -> list[tuple[Call, int]]:
    rows = json.loads(path.read_text())
    fields = ("function", "action", "setting", "suffix", "observed")
    return [(Call(**{k: row[k] for k in fields}), int(row["count"])) for row in rows]


def report(calls: list[tuple[Call, int]]) -> tuple[list[str], int]:
    functions = sam_template.functions_by_code_dir()
    by_function: dict[str, list[tuple[Call, int]]] = defaultdict(list)
    for call, count in calls:
        by_function[call.function].append((call, count))
    lines: list[str] = []
    denied = 0
    for code_dir, function in sorted(functions.items(), key=lambda kv: kv[1].logical_id):
        recorded = by_function.pop(code_dir, [])
        verdicts = [(verdict(call, functions), count) for call, count in recorded]
        allowed = sum(1 for v, _ in verdicts if v.allowed)
        lines.append(
            f"\n{function.logical_id} (functions/{code_dir}): {len(verdicts)} kinds of call recorded, "
            f"{allowed} allowed"
        )
        for v, count in sorted(verdicts, key=lambda vc: (vc[0].allowed, vc[0].call.action)):
            mark = "ok    " if v.allowed else "DENIED"
            lines.append(f"  {mark} {v.call.action:<34} {v.resource or '(' + v.reason + ')'}  x{count}")
            denied += not v.allowed
        used = [v for v, _ in verdicts if v.resource]
        unused: dict[str, list[str]] = defaultdict(list)
        for statement in function.statements:
            # An action of a statement is used when a call matched it on any of its resources.
            for action in statement.actions:
                probe = sam_template.Statement("", "Allow", (action,), statement.resources)
                if not any(probe.matches(v.call.action, v.resource or "") for v in used):
                    unused[statement.policy].append(action.split(":", 1)[1])
        if not recorded:
            lines.append("  (no call recorded: no test runs this function's handler in-process)")
        for policy, actions in sorted(unused.items()):
            lines.append(f"  unused: {policy}: {', '.join(sorted(set(actions)))}")
    for code_dir, recorded in sorted(by_function.items()):  # code that no template function has
        lines.append(f"\nfunctions/{code_dir}: not a function of template.yaml")
        for call, count in recorded:
            lines.append(f"  DENIED {call.action:<34} {call.observed}  x{count}")
            denied += 1
    return lines, denied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from", dest="source", type=Path, help="a recording (pytest --iam-record FILE)")
    parser.add_argument(
        "tests", nargs="*", default=["tests/integration"], help="what to run (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    status = 0
    if args.source:
        path = args.source
    else:
        path = Path(tempfile.mkdtemp(prefix="kubilitics-iam-")) / "calls.json"
        status = subprocess.run([*PYTEST, *args.tests, "--iam-record", str(path)], cwd=REPO).returncode
        if not path.exists():
            print("iam-check: the test run wrote no recording", file=sys.stderr)
            return 1
    lines, denied = report(load(path))
    print("\n".join(lines))
    print(f"\niam-check: {denied} denied kind(s) of call; recording: {path}")
    return 1 if denied or status else 0


if __name__ == "__main__":
    sys.exit(main())
