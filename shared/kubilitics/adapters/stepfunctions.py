"""Step Functions: start investigation executions (ports.WorkflowStarter)."""

from __future__ import annotations

import json
from typing import Any

from kubilitics.adapters.aws import client
from kubilitics.errors import KubiliticsError


class StepFunctionsStarter:
    def __init__(self, state_machine_arn: str | None):
        self._arn = state_machine_arn

    def start(self, name: str, payload: dict[str, Any]) -> str:
        if not self._arn:
            raise KubiliticsError(
                "Investigations are not available: no state machine is configured",
                code="service_unavailable",
                details={"setting": "KUBILITICS_STATE_MACHINE_ARN"},
            )
        try:
            # Named after the investigation: a retried start cannot run the same investigation twice.
            result = client("stepfunctions").start_execution(
                stateMachineArn=self._arn, name=name, input=json.dumps(payload, separators=(",", ":"))
            )
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            raise KubiliticsError(
                "The investigation workflow could not be started",
                code="investigation_failed",
                details={"reason": code or type(exc).__name__},
            ) from exc
        return str(result["executionArn"])
