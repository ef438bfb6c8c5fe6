"""Makes the testbed fixtures (k8s_cluster, k8s_namespace) available to tests in this folder.

cluster.py is loaded by file path so this works whatever pytest's import mode and whether or
not tests/ is a package.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

_NAME = "kubilitics_testbed_cluster"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("cluster.py"))
    assert _spec and _spec.loader
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)
_cluster = sys.modules[_NAME]

k8s_cluster = _cluster.k8s_cluster
k8s_namespace = _cluster.k8s_namespace


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "testbed: needs the local Kubernetes testbed cluster")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.testbed)
