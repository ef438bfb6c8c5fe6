"""The watch relay killed mid-delivery: a run stops dead between two post_to_connection calls of one
batch (frozen for good, as a Lambda process that is killed: no checkpoint, no lease renewal, no hand
over). The next run (functions/watch_relay, as EventBridge starts it) takes the lease once it has
lapsed and resumes every watch from the stored checkpoint: no event is lost; the events after the
checkpoint that the dead run had already delivered come again (at least once; each carries its
resourceVersion), none out of order.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes.client import CoreV1Api

from tests.integration.test_websocket_functions import (  # noqa: F401
    configmap,
    connect,
    invocations,
    ns,
    posted,
    relay,
    subscribe,
    updates,
    ws,
)

pytestmark = pytest.mark.cluster


class Killed(BaseException):
    """Raised in the frozen run when the test ends."""


class DyingNotifier:
    """Delivers `survive` messages, then freezes in the middle of the next batch."""

    def __init__(self, notifier: Any, survive: int):
        self._notifier, self._left = notifier, survive
        self.dead = threading.Event()
        self.buried = threading.Event()

    def post(self, connection_id: str, message: str) -> bool:
        if self._left <= 0:
            self.dead.set()
            self.buried.wait()
            raise Killed()
        self._left -= 1
        return bool(self._notifier.post(connection_id, message))

    def post_batch(self, connection_id: str, messages: list[str]) -> bool:
        return all(self.post(connection_id, message) for message in messages)

    def close(self, connection_id: str) -> None:
        self._notifier.close(connection_id)


def test_a_relay_killed_mid_delivery_loses_no_event(ws, aws, mint, invocations, k8s_cluster, ns):  # noqa: F811
    from kubilitics.container import get_container
    from kubilitics.services.watch import RelayOptions

    services = get_container()
    token = mint(sub="kim")
    selector = f"run=killed-{time.time_ns()}"
    connect(ws, "c-kill", token)
    subscribe(ws, "c-kill", resource_kind="ConfigMap", namespace=ns, label_selector=selector)

    dying = DyingNotifier(services.connection_notifier, survive=5)
    options = RelayOptions(lease_seconds=2, renew_seconds=0.5, takeover_window_seconds=5)
    first = services.watch_relay("killed-run", dying, options)
    outcome: list[Any] = []

    def run_first() -> None:
        try:
            outcome.append(first.run(time.time() + 120))
        except Killed:
            outcome.append("killed")

    thread = threading.Thread(target=run_first, daemon=True)
    thread.start()
    core = CoreV1Api(k8s_cluster.api_client())
    created: list[str] = []
    try:
        time.sleep(1.0)  # the run has started its watch
        # Changes one at a time: some delivered and checkpointed, then the run dies mid-delivery.
        for index in range(8):
            name = f"k-{index:02d}"
            core.create_namespaced_config_map(ns, configmap(name, selector))
            created.append(name)
            time.sleep(0.3)
        assert dying.dead.wait(10), "the first run never reached its sixth delivery"
        delivered_before = [name for _, name in updates("c-kill")]
        assert delivered_before == created[:5]
        # Changes while no relay delivers anything.
        for index in range(8, 12):
            name = f"k-{index:02d}"
            core.create_namespaced_config_map(ns, configmap(name, selector))
            created.append(name)
        time.sleep(options.lease_seconds + 0.5)  # the dead run's lease lapses (it renews no more)

        report = relay(invocations, 6)  # the next scheduled run
        assert report["status"] == "handed_over", report
        assert report["epoch"] == 2 and report["events"] > 0, report
    finally:
        dying.buried.set()
        thread.join(timeout=10)

    names = [name for _, name in updates("c-kill")]
    assert set(names) == set(created), f"lost: {sorted(set(created) - set(names))}"
    # The next run sent everything after the checkpoint, in order: the changes made while no relay
    # ran, and again those the dead run delivered after its last checkpoint (at most the five).
    resumed = names[len(delivered_before) :]
    since = created.index(resumed[0])
    assert resumed == created[since:], names
    assert since <= len(delivered_before)
    versions = [
        int(m["resource"]["metadata"]["resourceVersion"]) for m in posted("c-kill") if m["type"] == "ADDED"
    ]
    assert versions[len(delivered_before) :] == sorted(versions[len(delivered_before) :])
    print(f"resumed from the checkpoint after {since} of {len(created)} changes: {names}")
