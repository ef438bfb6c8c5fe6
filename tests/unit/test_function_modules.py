"""Every Lambda module loads alone, leaves the garbage collector on, and keeps heavy SDKs out of its init."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import offline_process_env

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(path.parent.name for path in (REPO / "functions").glob("*/app.py"))

PROBE = """
import gc, importlib, json, sys
sys.path.insert(0, sys.argv[1])  # the function's own folder first, as the Lambda runtime does
module = importlib.import_module("app")
print(json.dumps({
    "handler": callable(getattr(module, "handler", None)),
    "gc_enabled": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
    "anthropic": "anthropic" in sys.modules,
    "kubernetes_models": any(name.startswith("kubernetes.client.models") for name in sys.modules),
}))
"""


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_module_initialises_cleanly(function, tmp_path):
    env = offline_process_env(tmp_path / "none", str(REPO / "shared"))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "functions" / function)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert loaded["handler"]
    # The init phase turned collection off while importing: it must be back on for the requests.
    assert loaded["gc_enabled"]
    assert loaded["frozen"] > 10_000
    assert not loaded["anthropic"], "the Anthropic SDK loads on the first AI call, never at init"
    assert not loaded["kubernetes_models"]
