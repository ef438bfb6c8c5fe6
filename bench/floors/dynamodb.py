"""Floor for functions that use DynamoDB only: one FastAPI route behind Mangum making one boto3
DynamoDB update. It is what a plain hand-written handler making the same call costs.
"""

import os

import boto3
from fastapi import FastAPI
from mangum import Mangum

TABLE = os.environ.get("KUBILITICS_RATE_LIMIT_TABLE", "kubilitics-rate-limits")

dynamodb = boto3.client(
    "dynamodb",
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    endpoint_url=os.environ.get("KUBILITICS_AWS_ENDPOINT_URL"),
)

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
    return {"path": path}


handler = Mangum(app, lifespan="off")
