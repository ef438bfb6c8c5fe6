"""Exec output is capped while it streams (review L9): memory stays bounded however much a command
writes, and the cut is the one the response reports (`truncated`, the first 1 MiB characters)."""

from __future__ import annotations

import itertools
import json
import tracemalloc
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubilitics.adapters.kube_rest import KubeRestClients
from kubilitics.adapters.kubernetes import CappedText, KubernetesGateway
from kubilitics.services.pods import MAX_OUTPUT_CHARS, ExecRequest, PodService

FRAME = 64 * 1024


class FloodingExec:
    """An exec WebSocket (v4 channel protocol) whose command writes `stdout_bytes` of output in 64 KiB
    frames, a line of stderr, then exits 0; every frame is a fresh bytes object, as off the wire."""

    def __init__(self, stdout_bytes: int, chunk: bytes = b"x" * FRAME):
        self.left = stdout_bytes
        self.chunk = chunk
        self.tail = [b"\x02oops\n", b"\x03" + json.dumps({"status": "Success"}).encode()]
        self.frames_read = 0

    def __enter__(self) -> FloodingExec:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def recv(self, timeout: float) -> bytes:
        self.frames_read += 1
        if self.left > 0:
            size = min(self.left, len(self.chunk))
            self.left -= size
            return b"\x01" + self.chunk[:size]
        if self.tail:
            return self.tail.pop(0)
        raise ConnectionError("closed by the server")  # the command is over


def gateway_with(socket: FloodingExec) -> KubernetesGateway:
    gateway = KubernetesGateway(KubeRestClients(), timeout=5)
    gateway.open_exec = lambda *args, **kwargs: socket  # type: ignore[method-assign]
    return gateway


def test_fifty_megabytes_of_stdout_are_read_to_the_end_in_bounded_memory():
    socket = FloodingExec(50 * 1024 * 1024)
    gateway = gateway_with(socket)
    tracemalloc.start()
    try:
        result = gateway.exec(
            SimpleNamespace(name="ctx"),
            "ns",
            "pod",
            "app",
            ["yes"],
            timeout=30,
            max_output_chars=MAX_OUTPUT_CHARS,
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_OUTPUT_CHARS  # the kept megabyte and a frame or two, not 50 MB
    assert result.stdout == "x" * MAX_OUTPUT_CHARS and result.stdout_truncated
    assert (result.stderr, result.stderr_truncated, result.exit_code) == ("oops\n", False, 0)
    assert socket.left == 0 and not socket.tail  # drained: the command ran to its end


def test_the_response_says_truncated_with_the_first_mebibyte(monkeypatch):
    """Through the pods service: the reference's body, cut as before (first 1 MiB characters)."""
    socket = FloodingExec(3 * MAX_OUTPUT_CHARS + 5)
    gateway = gateway_with(socket)
    pod = {"spec": {"containers": [{"name": "app"}]}}
    monkeypatch.setattr(gateway, "get_path", lambda *args, **kwargs: pod)
    leases = SimpleNamespace(acquire=lambda *args: True, release=lambda *args: None)
    service = PodService(gateway, leases, SimpleNamespace(now=lambda: 1_770_000_000.0))
    body = service.exec(SimpleNamespace(name="ctx"), "ns", "web", ExecRequest(command=["yes"]))
    assert (body["exit_code"], body["truncated"], len(body["stdout"]), body["stderr"]) == (
        0,
        True,
        MAX_OUTPUT_CHARS,
        "oops\n",
    )


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=64) | st.text(max_size=40).map(lambda t: t.encode()),
    cuts=st.lists(st.integers(0, 64), max_size=6),
    limit=st.integers(0, 30),
)
def test_capped_text_is_the_decoded_stream_cut_at_the_limit(data, cuts, limit):
    """Frames split anywhere (inside a multi-byte character too): the same text and flag as decoding
    everything at once and cutting afterwards (what the service did before)."""
    capped = CappedText(limit)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, end in itertools.pairwise(bounds):
        capped.add(data[start:end])
    whole = data.decode(errors="replace")
    assert capped.text() == whole[:limit]
    assert capped.truncated == (len(whole) > limit)
    assert capped.text() == whole[:limit]  # asking twice changes nothing


@pytest.mark.parametrize("chunk", ["é", "€", "😀", "a"])
def test_one_huge_frame_is_not_decoded_whole(chunk):
    frame = (chunk * 1_000_000).encode()
    capped = CappedText(10)
    tracemalloc.start()
    try:
        capped.add(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (capped.text(), capped.truncated) == (chunk * 10, True)
    assert peak < 10_000
