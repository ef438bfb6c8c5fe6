"""Settings refuse unsafe production setups; the CLI mints tokens the API accepts; secrets come from AWS."""

from __future__ import annotations

import jwt
import pytest
from kubilitics import cli, container
from kubilitics.config import DEVELOPMENT_JWT_SECRET, Settings
from pydantic import ValidationError


def test_production_refuses_to_start_without_a_jwt_secret(settings_env):
    settings_env.delenv("KUBILITICS_JWT_SECRET")
    settings_env.setenv("KUBILITICS_ENV", "production")
    with pytest.raises(ValidationError, match="production needs KUBILITICS_JWT_SECRET"):
        Settings.from_env()


def test_production_refuses_the_development_secret(settings_env):
    settings_env.setenv("KUBILITICS_ENV", "production")
    settings_env.setenv("KUBILITICS_JWT_SECRET", DEVELOPMENT_JWT_SECRET)
    with pytest.raises(ValidationError, match="development JWT secret is refused"):
        Settings.from_env()


def test_production_rs256_needs_a_jwks_url(settings_env):
    settings_env.setenv("KUBILITICS_ENV", "production")
    settings_env.setenv("KUBILITICS_JWT_ALGORITHM", "RS256")
    with pytest.raises(ValidationError, match="RS256 needs KUBILITICS_JWKS_URL"):
        Settings.from_env()


def test_settings_come_from_prefixed_variables_and_the_usual_aliases():
    settings = Settings.from_env(
        {
            "kubilitics_kube_timeout_seconds": "3.5",  # names match whatever their case
            "AWS_REGION": "eu-west-1",
            "KUBECONFIG": "/tmp/a.yaml:/tmp/b.yaml",
            "KUBILITICS_AI_MODEL_PRICES": '{"claude-x": {"input": 1.5, "output": 7.5}}',
            "UNRELATED": "ignored",
        }
    )
    assert settings.kube_timeout_seconds == 3.5
    assert settings.region == "eu-west-1"
    assert str(settings.kubeconfig_path) == "/tmp/a.yaml"
    assert settings.ai_model_prices == {"claude-x": {"input": 1.5, "output": 7.5}}
    assert (
        Settings.from_env({"KUBILITICS_REGION": "ap-south-1", "AWS_REGION": "eu-west-1"}).region
        == "ap-south-1"
    )


def test_settings_name_the_variable_that_is_wrong():
    with pytest.raises(ValueError, match="KUBILITICS_AI_MODEL_PRICES is not valid JSON"):
        Settings.from_env({"KUBILITICS_AI_MODEL_PRICES": "{not json"})
    with pytest.raises(ValidationError, match="kube_timeout_seconds"):
        Settings.from_env({"KUBILITICS_KUBE_TIMEOUT_SECONDS": "-1"})


def test_jwt_secret_is_read_from_secrets_manager(aws, settings_env):
    from kubilitics.adapters.aws import client

    arn = client("secretsmanager").create_secret(
        Name="kubilitics-jwt", SecretString="from-secrets-manager-0123456789abcdef"
    )["ARN"]
    settings_env.delenv("KUBILITICS_JWT_SECRET")
    settings_env.setenv("KUBILITICS_ENV", "production")
    settings_env.setenv("KUBILITICS_JWT_SECRET_ARN", arn)
    container.reset()
    token, _ = container.get_container().token_codec.mint(sub="alice", scopes=["read"], now=1_800_000_000)
    claims = jwt.decode(
        token,
        "from-secrets-manager-0123456789abcdef",
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == "alice"


def test_cli_creates_a_token_with_the_requested_claims(settings_env, capsys):
    assert cli.main(["token", "create", "--sub", "alice", "--scope", "read,write", "--type", "service",
                     "--cluster-id", "prod", "--namespace", "team-a"]) == 0  # fmt: skip
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, "test-secret-for-kubilitics-unit-tests", algorithms=["HS256"])
    assert (claims["sub"], claims["scope"], claims["token_type"]) == ("alice", "read,write", "service")
    assert (claims["cluster_id"], claims["namespace"]) == ("prod", "team-a")
    assert claims["exp"] - claims["iat"] == 7 * 24 * 3600


def test_cli_refuses_unknown_scopes(settings_env, capsys):
    assert cli.main(["token", "create", "--sub", "alice", "--scope", "read,root"]) == 2
    assert "unknown scopes: root" in capsys.readouterr().err


def test_cli_revokes_a_token_in_the_revocation_table(aws, settings_env, capsys):
    cli.main(["token", "create", "--sub", "bob", "--scope", "read"])
    token = capsys.readouterr().out.strip()
    assert cli.main(["token", "revoke", "--token", token, "--by", "security-team"]) == 0
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    item = aws.get_item(TableName="kubilitics-revoked-tokens", Key={"pk": {"S": f"jti#{jti}"}})["Item"]
    assert item["revoked_by"] == {"S": "security-team"}
    assert container.get_container().revocations.is_revoked(jti)
