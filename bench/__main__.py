"""`python -m bench` runs every benchmark below; `python -m bench <name> [options]` runs one."""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench import cold_start, investigations, resources, topology, triage, websocket

BENCHMARKS: dict[str, Callable[[list[str]], int]] = {
    "cold_start": cold_start.main,
    "investigations": investigations.main,
    "resources": resources.main,
    "topology": topology.main,
    "triage": triage.main,
    "websocket": websocket.main,
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in BENCHMARKS:
        return BENCHMARKS[argv[0]](argv[1:])
    if argv:
        print(f"unknown benchmark {argv[0]!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    failures = 0
    for name, run in BENCHMARKS.items():
        print(f"== {name}")
        failures += run([]) != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
