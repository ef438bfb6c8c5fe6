"""A Python client generated from the server's /openapi.json by openapi-python-client (pinned in
requirements-dev.txt), as a user of the API would generate one.

Generated during the test run into a temporary directory, never committed, and imported as the package
`kubilitics_client`. One generation per document within a run: the same document (by SHA-256) is
generated once; a different one replaces the package in `sys.modules`. The generator must finish
without a warning (`--fail-on-warning`): a schema it cannot turn into code is a fault of the document
(shared/kubilitics/api/openapi.py), not something to work around in a test.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "kubilitics_client"
# The generator's own post-processing runs `ruff` on the code; nothing here reads it formatted.
CONFIG = {"package_name_override": PACKAGE, "post_hooks": []}

_generated: dict[str, Path] = {}  # document digest -> the directory holding the package
_imported: str | None = None  # digest of the package in sys.modules


def generator() -> list[str]:
    """The generator installed beside the test runner, at the version requirements-dev.txt pins."""
    from importlib.metadata import PackageNotFoundError, version

    pins = (Path(__file__).resolve().parents[1] / "requirements-dev.txt").read_text()
    match = re.search(r"^openapi-python-client==(\S+)", pins, re.MULTILINE)
    assert match, "openapi-python-client is not pinned in requirements-dev.txt"
    try:
        installed = version("openapi-python-client")
    except PackageNotFoundError:
        installed = None
    if installed != match.group(1):
        raise RuntimeError(
            f"openapi-python-client {installed} installed, {match.group(1)} pinned: run `make setup`"
        )
    return [str(Path(sys.executable).with_name("openapi-python-client"))]


def generate(document: bytes, workdir: Path) -> Path:
    """Generate the client for `document` under `workdir` (once per document); the package's parent."""
    digest = hashlib.sha256(document).hexdigest()
    if digest in _generated:
        return _generated[digest]
    root = workdir / digest[:16]
    root.mkdir(parents=True, exist_ok=True)
    spec, config = root / "openapi.json", root / "config.json"
    spec.write_bytes(document)
    config.write_text(json.dumps(CONFIG))
    done = subprocess.run(
        [*generator(), "generate", "--path", str(spec), "--output-path", str(root / PACKAGE),
         "--meta", "none", "--config", str(config), "--overwrite", "--fail-on-warning"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(
            f"openapi-python-client failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    _generated[digest] = root
    return root


def load(document: bytes, workdir: Path) -> ModuleType:
    """The generated client for `document`, imported as `kubilitics_client`."""
    global _imported
    digest = hashlib.sha256(document).hexdigest()
    root = generate(document, workdir)
    if _imported != digest:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        others = {str(path) for path in _generated.values()}
        sys.path[:] = [path for path in sys.path if path not in others]
        sys.path.insert(0, str(root))
        importlib.invalidate_caches()
        _imported = digest
    return importlib.import_module(PACKAGE)


def client(package: ModuleType, base_url: str, token: str, **kwargs: Any) -> Any:
    """An AuthenticatedClient of the generated package (bearer token, as the document declares)."""
    import httpx

    return package.AuthenticatedClient(base_url=base_url, token=token, timeout=httpx.Timeout(60.0), **kwargs)
