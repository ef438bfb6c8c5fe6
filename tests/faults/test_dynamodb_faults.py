"""DynamoDB throttling and failing (errors injected through botocore's event system, in front of
moto): what botocore's retries absorb is invisible; what outlasts them is a 503 `service_unavailable`
with `Retry-After`, never a 500 or a partial answer, and it is over as soon as DynamoDB recovers.
"""

from __future__ import annotations

import importlib
import json
import time

import pytest
from botocore.awsrequest import AWSResponse

from tests.support import invoke, load_event

pytestmark = pytest.mark.cluster

NAMESPACES = "cluster/list_namespaces.json"
LIST = "ai_investigations/list_investigations.json"


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_: object):
        yield self.data


class Faults:
    """Answers the next `times` DynamoDB calls (every call when None) with `status`/`code`."""

    def __init__(self) -> None:
        self.status, self.code, self.times, self.injected = 0, "", 0, 0

    def fail(self, status: int, code: str, times: int | None = None) -> None:
        self.status, self.code, self.times = status, code, times

    def heal(self) -> None:
        self.status = 0

    def __call__(self, request, **_: object):
        if not self.status or self.times == 0:
            return None  # sent to moto as usual
        if self.times is not None:
            self.times -= 1
        self.injected += 1
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}", "message": "injected"})
        headers = {"x-amzn-RequestId": "fault", "Content-Type": "application/x-amz-json-1.0"}
        return AWSResponse(request.url, self.status, headers, _Body(body.encode()))


@pytest.fixture()
def faults(aws, on_cluster):
    from kubilitics.adapters.aws import client

    injected = Faults()
    client("dynamodb").meta.events.register("before-send.dynamodb", injected)
    try:
        yield injected
    finally:
        client("dynamodb").meta.events.unregister("before-send.dynamodb", injected)


@pytest.fixture()
def handler(faults):
    return importlib.import_module("functions.cluster.app").handler


@pytest.fixture()
def investigations(faults):
    return importlib.import_module("functions.ai_investigations.app").handler


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "ProvisionedThroughputExceededException"),
        (400, "ThrottlingException"),
        (500, "InternalServerError"),
    ],
)
def test_throttling_or_failing_past_the_retries_is_a_503_with_retry_after(
    investigations, faults, mint, status, code
):
    token = mint()
    assert invoke(investigations, load_event(LIST, token=token))[0] == 200
    faults.fail(status, code)
    started = time.monotonic()
    got, headers, body = invoke(investigations, load_event(LIST, token=token))
    assert (got, body["error"]) == (503, "service_unavailable"), body
    assert headers["retry-after"] == "1"
    assert body["details"]["aws_error"] == code
    assert faults.injected >= 3  # botocore tried more than once before giving up
    assert time.monotonic() - started < 10
    faults.heal()
    got, _, body = invoke(investigations, load_event(LIST, token=token))
    assert got == 200 and body["total_count"] == 0


def test_reads_stay_up_for_known_tokens_and_refuse_tokens_whose_revocation_cannot_be_checked(
    handler, faults, mint
):
    """The rate limiter's store failing does not take reads down (api/deps.py), and a token checked
    moments ago is not looked up again (its revocation answer is cached); a token never seen is
    refused with a 503, not let through unchecked."""
    known, fresh = mint(sub="known"), mint(sub="fresh")
    assert invoke(handler, load_event(NAMESPACES, token=known))[0] == 200
    faults.fail(400, "ProvisionedThroughputExceededException")
    got, _, body = invoke(handler, load_event(NAMESPACES, token=known))
    assert got == 200 and any(n["name"] == "default" for n in body["items"]), body
    assert faults.injected >= 3  # the counter write was tried
    got, headers, body = invoke(handler, load_event(NAMESPACES, token=fresh))
    assert (got, body["error"]) == (503, "service_unavailable") and headers["retry-after"] == "1", body
    assert body["message"].startswith("Token revocation lookup failed")


def test_a_short_throttle_is_absorbed_by_the_retries(investigations, faults, mint):
    token = mint()
    faults.fail(400, "ProvisionedThroughputExceededException", times=1)
    got, _, body = invoke(investigations, load_event(LIST, token=token))
    assert got == 200, body
    assert faults.injected == 1
