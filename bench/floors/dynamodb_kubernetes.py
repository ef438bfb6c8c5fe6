"""Floor for functions that use DynamoDB and Kubernetes: one FastAPI route behind Mangum that makes
one boto3 DynamoDB update and one Kubernetes `GET /version` over mutual TLS (urllib3, client
certificates from the kubeconfig, as kubilitics.adapters.kube_rest does).

It is what a plain hand-written handler making the same calls costs; a function is compared with it.
"""

import base64
import json
import os
import ssl
import tempfile
from functools import cache
from pathlib import Path

import boto3
import urllib3
import yaml
from fastapi import FastAPI
from mangum import Mangum

TABLE = os.environ.get("KUBILITICS_RATE_LIMIT_TABLE", "kubilitics-rate-limits")

dynamodb = boto3.client(
    "dynamodb",
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    endpoint_url=os.environ.get("KUBILITICS_AWS_ENDPOINT_URL"),
)


@cache
def kubernetes() -> tuple[str, urllib3.PoolManager]:
    """The current context's server and a connection pool holding its client certificate."""
    config = yaml.safe_load(Path(os.environ["KUBILITICS_KUBECONFIG"]).read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    workdir = Path(tempfile.mkdtemp(prefix="bench-floor-"))  # 0700: the key stays private

    def pem(name: str, data: str) -> str:
        (workdir / name).write_bytes(base64.b64decode(data))
        return str(workdir / name)

    tls = ssl.create_default_context(cafile=pem("ca.crt", cluster["certificate-authority-data"]))
    tls.load_cert_chain(
        pem("client.crt", user["client-certificate-data"]), pem("client.key", user["client-key-data"])
    )
    return cluster["server"], urllib3.PoolManager(ssl_context=tls)


app = FastAPI()


# One route for every path and method, so the floor answers whatever event its function gets.
@app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def floor(path: str) -> dict[str, str]:
    dynamodb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "bench#floor"}},
        UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    server, pool = kubernetes()
    version = json.loads(pool.request("GET", server + "/version", timeout=2.0).data)
    return {"path": path, "kubernetes": version["gitVersion"]}


handler = Mangum(app, lifespan="off")
