"""PodService with in-memory fakes: log filtering, exec command wrapping, the per-pod exec lease."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from kubilitics.errors import KubiliticsError
from kubilitics.services.pods import (
    SCAN_LINES,
    ExecRequest,
    LogQuery,
    PodService,
    exec_lease_name,
    rfc3339_ns,
    wrap_command,
)

CONTEXT = SimpleNamespace(name="ctx")
LOG = (
    "2026-02-10T14:23:45.123456789Z [INFO] Starting application\n"
    "2026-02-10T14:23:46.000000000Z [INFO] Database connection established\n"
    "2026-02-10T14:23:47.789000000Z [WARN] Cache miss for key: user:123\n"
    "2026-02-10T14:23:48.012000000Z [ERROR] Failed to fetch external service\n"
)


@dataclass
class FakeExecResult:
    exit_code: int
    stdout: str
    stderr: str


class FakeKube:
    def __init__(self, containers: list[str] | None = None, log: str = LOG):
        self.pod = {"spec": {"containers": [{"name": c} for c in containers or ["app"]]}}
        self.log = log
        self.log_params: list[dict[str, Any]] = []
        self.commands: list[list[str]] = []

    def get_path(self, context: Any, path: str, params: Any = None, timeout: Any = None) -> dict[str, Any]:
        if path.endswith("/ghost"):
            raise KubiliticsError('pods "ghost" not found', code="not_found")
        return self.pod

    def pod_logs(self, context: Any, namespace: str, name: str, params: dict[str, Any]) -> str:
        self.log_params.append(params)
        return self.log

    def exec(self, context, namespace, pod, container, command, timeout, max_output_chars=None):
        self.commands.append(command)
        return FakeExecResult(0, "ok\n", "")


class FakeLeases:
    def __init__(self, busy_for: int = 0):
        self.busy_for = busy_for
        self.released: list[tuple[str, str]] = []

    def acquire(self, name: str, owner: str, lease_until: float, now: float) -> bool:
        if self.busy_for:
            self.busy_for -= 1
            return False
        return True

    def release(self, name: str, owner: str) -> None:
        self.released.append((name, owner))


class FakeClock:
    def now(self) -> float:
        return 1_770_733_425.0


def service(kube: FakeKube | None = None, leases: FakeLeases | None = None) -> PodService:
    return PodService(kube or FakeKube(), leases or FakeLeases(), FakeClock(), sleep=lambda _: None)


def test_rfc3339_with_nanoseconds_and_offsets():
    assert rfc3339_ns("2026-02-10T14:23:45Z") == 1_770_733_425_000_000_000
    assert rfc3339_ns("2026-02-10T14:23:45.123456789Z") == 1_770_733_425_123_456_789
    assert rfc3339_ns("2026-02-10T16:23:45.5+02:00") == 1_770_733_425_500_000_000
    for bad in ("2026-02-10", "2026-02-10T14:23:45", "2026-02-30T00:00:00Z", "yesterday", ""):
        assert rfc3339_ns(bad) is None


def test_filters_apply_before_the_tail():
    pods = service()
    query = LogQuery.parse(search="info", tail_lines=1, timestamps=False)
    assert pods.logs(CONTEXT, "default", "web", query) == "[INFO] Database connection established\n"


def test_search_and_until_scan_more_than_the_tail():
    kube = FakeKube()
    service(kube).logs(CONTEXT, "default", "web", LogQuery.parse(search="x", tail_lines=5))
    service(kube).logs(CONTEXT, "default", "web", LogQuery.parse(tail_lines=5))
    assert [p["tailLines"] for p in kube.log_params] == [SCAN_LINES, 5]
    assert all(p["timestamps"] == "true" for p in kube.log_params)  # needed for the time filters


def test_time_window_is_exact_and_inclusive():
    query = LogQuery.parse(since_time="2026-02-10T14:23:45.123456789Z", until_time="2026-02-10T14:23:47.789Z")
    text = service().logs(CONTEXT, "default", "web", query)
    assert [line.split(" ", 1)[1] for line in text.splitlines()] == [
        "[INFO] Starting application",
        "[INFO] Database connection established",
        "[WARN] Cache miss for key: user:123",
    ]


def test_since_time_goes_to_the_api_server_in_whole_seconds():
    kube = FakeKube()
    service(kube).logs(CONTEXT, "default", "web", LogQuery.parse(since_time="2026-02-10T14:23:46.9Z"))
    assert kube.log_params[0]["sinceTime"] == "2026-02-10T14:23:46Z"


def test_search_matches_the_text_not_the_timestamp():
    query = LogQuery.parse(search="2026", tail_lines=100)
    assert service().logs(CONTEXT, "default", "web", query) == ""


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({"since_time": "nope"}, "since_time"), ({"until_time": "2026-02-10"}, "until_time"),
     ({"since_time": "2026-02-10T14:00:01Z", "until_time": "2026-02-10T14:00:00Z"}, "since_time")],
)  # fmt: skip
def test_bad_times(params, parameter):
    with pytest.raises(KubiliticsError) as caught:
        LogQuery.parse(**params)
    assert caught.value.code == "invalid_parameter" and caught.value.details["parameter"] == parameter


def test_a_missing_pod_is_not_found_with_its_names():
    with pytest.raises(KubiliticsError) as caught:
        service().logs(CONTEXT, "default", "ghost", LogQuery())
    assert caught.value.code == "not_found"
    assert caught.value.details == {"namespace": "default", "pod_name": "ghost"}


def test_the_container_is_required_when_there_are_several():
    pods = service(FakeKube(["app", "proxy"]))
    with pytest.raises(KubiliticsError) as caught:
        pods.logs(CONTEXT, "default", "web", LogQuery())
    assert caught.value.code == "invalid_parameter" and caught.value.details["containers"] == ["app", "proxy"]
    assert pods.logs(CONTEXT, "default", "web", LogQuery(container="proxy", tail_lines=1))


def test_wrap_command_shapes():
    assert wrap_command(["ls"], None, {}) == ["ls"]
    assert wrap_command(["ls"], None, {"B": "2", "A": "1"}) == ["env", "A=1", "B=2", "ls"]
    assert wrap_command(["ls", "-l"], "/srv", {}) == [
        "sh", "-c", 'cd "$1" && shift && exec "$@"', "kubilitics-exec", "/srv", "ls", "-l",
    ]  # fmt: skip


def test_wrapped_command_passes_values_through_untouched(tmp_path):
    odd = tmp_path / "dir with 'quotes' and $(x)"
    odd.mkdir()
    argv = wrap_command(["sh", "-c", 'pwd; printf "%s\\n" "$V"'], str(odd), {"V": "a b; $(rm -rf /) `id`"})
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert result.stdout == f"{odd}\na b; $(rm -rf /) `id`\n"


def test_exec_waits_for_the_lease_and_always_gives_it_back():
    leases = FakeLeases(busy_for=3)
    kube = FakeKube()
    body = service(kube, leases).exec(CONTEXT, "default", "web", ExecRequest(command=["true"]))
    assert body["exit_code"] == 0 and body["container"] == "app"
    assert leases.released == [(exec_lease_name("ctx", "default", "web"), leases.released[0][1])]


def test_exec_gives_up_on_a_busy_pod_at_its_deadline():
    leases = FakeLeases(busy_for=10**9)
    kube = FakeKube()
    with pytest.raises(KubiliticsError) as caught:
        service(kube, leases).exec(
            CONTEXT, "default", "web", ExecRequest(command=["true"], timeout_seconds=0.05)
        )
    assert caught.value.code == "resource_conflict" and caught.value.details["reason"] == "exec_in_progress"
    assert kube.commands == [] and leases.released == []


def test_exec_non_zero_exit_is_exec_failed_and_releases_the_lease():
    class Failing(FakeKube):
        def exec(self, *args, **kwargs):
            return FakeExecResult(127, "", "sh: curl: not found")

    leases = FakeLeases()
    with pytest.raises(KubiliticsError) as caught:
        service(Failing(), leases).exec(CONTEXT, "default", "web", ExecRequest(command=["curl"]))
    assert caught.value.code == "exec_failed" and caught.value.status == 500
    assert caught.value.extra["exit_code"] == 127 and caught.value.extra["stderr"] == "sh: curl: not found"
    assert len(leases.released) == 1


def test_a_huge_log_keeps_its_newest_lines_within_the_response_limit(monkeypatch):
    import kubilitics.services.pods as pods_module

    monkeypatch.setattr(pods_module, "MAX_LOG_CHARS", 60)
    log = "".join(f"2026-02-10T14:23:{i:02d}.000000000Z line {i}\n" for i in range(10))
    text = service(FakeKube(log=log)).logs(CONTEXT, "default", "web", LogQuery(timestamps=False))
    assert text == "line 2\nline 3\nline 4\nline 5\nline 6\nline 7\nline 8\nline 9\n"
