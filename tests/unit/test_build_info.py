"""GET /api/v1/version's build_commit / build_date: the template parameters when given, else what
scripts/sam/build.sh wrote into the built shared layer; "unknown" only outside a built artifact."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kubilitics.services.system import BUILD_INFO_FILE, build_info

REPO = Path(__file__).resolve().parents[2]


def test_the_built_layers_file_fills_what_is_not_configured(tmp_path):
    written = tmp_path / "_build_info.json"
    written.write_text(json.dumps({"commit": "abc123def456", "date": "2026-12-06T08:00:00Z"}))
    assert build_info({"commit": "unknown", "date": "unknown"}, written) == {
        "commit": "abc123def456",
        "date": "2026-12-06T08:00:00Z",
    }
    assert build_info({}, written)["commit"] == "abc123def456"


def test_configured_values_win_and_unknown_stays_only_without_a_build(tmp_path):
    written = tmp_path / "_build_info.json"
    written.write_text(json.dumps({"commit": "abc123def456", "date": "2026-12-06T08:00:00Z"}))
    assert build_info({"commit": "feed", "date": "2026-01-01T00:00:00Z"}, written) == {
        "commit": "feed",
        "date": "2026-01-01T00:00:00Z",
    }
    assert build_info({}, tmp_path / "missing.json") == {"commit": "unknown", "date": "unknown"}


def test_build_sh_writes_the_file_the_service_reads():
    script = (REPO / "scripts" / "sam" / "build.sh").read_text()
    assert BUILD_INFO_FILE.name == "_build_info.json" and BUILD_INFO_FILE.parent.name == "kubilitics"
    assert re.search(r'> "\$PACKAGE/_build_info\.json"', script)
    assert "SharedLayer" in script and "rev-parse" in script
