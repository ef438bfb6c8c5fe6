"""EKS bearer tokens from the Lambda's IAM role (a presigned STS GetCallerIdentity URL).

This is what `aws eks get-token` does; it means no long-lived cluster credentials are stored.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from typing import Any

TOKEN_PREFIX = "k8s-aws-v1."
# EKS accepts a token for 15 minutes; renew well before that.
TOKEN_REUSE_SECONDS = 600


def eks_cluster_from_exec(user: dict[str, Any]) -> tuple[str, str | None] | None:
    """(cluster name, region) when the kubeconfig user runs `aws eks get-token`, else None."""
    spec = user.get("exec") or {}
    args = [str(a) for a in spec.get("args") or []]
    command = str(spec.get("command", ""))
    if not (command.endswith("aws") and "get-token" in args) and not command.endswith(
        "aws-iam-authenticator"
    ):
        return None
    name = None
    region = None
    for flag, value in itertools.pairwise(args):
        if flag in ("--cluster-name", "-i", "--cluster-id"):
            name = value
        elif flag == "--region":
            region = value
    for env in spec.get("env") or []:
        if env.get("name") in ("AWS_REGION", "AWS_DEFAULT_REGION") and not region:
            region = env.get("value")
    return (name, region) if name else None


def presigned_token(cluster_name: str, region: str, session: Any = None) -> str:
    import boto3
    from botocore.signers import RequestSigner

    session = session or boto3.session.Session()
    sts = session.client("sts", region_name=region)
    signer = RequestSigner(
        sts.meta.service_model.service_id, region, "sts", "v4", session.get_credentials(), session.events
    )
    url = signer.generate_presigned_url(
        {
            "method": "GET",
            "url": f"https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
            "body": {},
            "headers": {"x-k8s-aws-id": cluster_name},
            "context": {},
        },
        region_name=region,
        expires_in=60,
        operation_name="",
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


class EksTokenSource:
    def __init__(self, cluster_name: str, region: str):
        self._cluster_name = cluster_name
        self._region = region
        self._token = ""
        self._minted_at = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if time.monotonic() - self._minted_at > TOKEN_REUSE_SECONDS:
                self._token = presigned_token(self._cluster_name, self._region)
                self._minted_at = time.monotonic()
            return self._token
