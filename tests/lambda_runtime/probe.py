"""Runs inside the Lambda runtime (copied next to the layers as `kubilitics_lambda_probe`): imports
the function modules as the runtime does and reports where the interpreter and every module came
from, so the harness can show that nothing is imported from the development venv.

Event: {"task_roots": {"<function>": "<its task root>"}}; the environment's own task root (the cwd,
first on sys.path) is imported as `app`, exactly as awslambdaric imports a handler's module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    importlib.import_module("app")
    for name, root in event["task_roots"].items():
        spec = importlib.util.spec_from_file_location(f"app_{name}", Path(root) / "app.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    files = {
        name: getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None)
    }
    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "version": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "path": sys.path,
        "files": files,
    }
