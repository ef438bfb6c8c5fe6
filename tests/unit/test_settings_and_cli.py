"""Settings refuse unsafe production setups; the CLI mints tokens the API accepts; secrets come from AWS."""

from __future__ import annotations

import jwt
import pytest
from kubilitics import cli, container
from kubilitics.auth.access import authenticate_token
from kubilitics.config import DEVELOPMENT_JWT_SECRET, Settings
from kubilitics.errors import KubiliticsError
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
            "KUBILITICS_ENV": "test",  # production (the default) would want a JWT secret
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
        Settings.from_env(
            {"KUBILITICS_ENV": "test", "KUBILITICS_REGION": "ap-south-1", "AWS_REGION": "eu-west-1"}
        ).region
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
    services = container.get_container()
    assert services.revocations.is_revoked(services.token_codec.decode(token, now=services.clock.now()))


def test_cli_puts_repeated_groups_into_the_token(settings_env, capsys):
    assert cli.main(["token", "create", "--sub", "alice", "--group", "team-a", "--group", "oncall"]) == 0
    claims = jwt.decode(
        capsys.readouterr().out.strip(), "test-secret-for-kubilitics-unit-tests", algorithms=["HS256"]
    )
    assert claims["groups"] == ["team-a", "oncall"]


@pytest.mark.parametrize(
    "before", ["1800000000", "2027-01-15T08:00:00Z", "2027-01-15T09:00:00+01:00", "2027-01-15T08:00:00"]
)
def test_cli_revokes_every_token_of_a_subject_issued_before_a_time(aws, settings_env, before):
    assert cli.main(["token", "revoke", "--sub", "alice", "--before", before, "--by", "security-team"]) == 0
    item = aws.get_item(TableName="kubilitics-revoked-tokens", Key={"pk": {"S": "sub#alice"}})["Item"]
    assert (item["revoked_before"], item["revoked_by"]) == ({"N": "1800000000"}, {"S": "security-team"})
    assert "expires_at" not in item  # kept: a provider's tokens may outlive any lifetime known here


def test_cli_subject_revocation_defaults_to_now(aws, settings_env, mint):
    older = mint(sub="alice")
    assert cli.main(["token", "revoke", "--sub", "alice"]) == 0
    services = container.get_container()
    with pytest.raises(KubiliticsError) as caught:
        authenticate_token(services, older)  # issued this very second: refused too
    assert caught.value.code == "token_revoked"
    later = mint(sub="alice", now=services.clock.now() + 2)
    assert authenticate_token(services, later).sub == "alice"


def test_cli_refuses_before_without_sub_and_minting_for_an_identity_provider(settings_env, capsys):
    assert cli.main(["token", "revoke", "--token", "x.y.z", "--before", "1800000000"]) == 2
    assert "--before goes with --sub" in capsys.readouterr().err
    assert cli.main(["token", "revoke", "--sub", "alice", "--before", "next tuesday"]) == 2
    assert "Unix seconds or an ISO 8601 time" in capsys.readouterr().err
    settings_env.setenv("KUBILITICS_JWT_ALGORITHM", "RS256")
    settings_env.setenv("KUBILITICS_JWKS_URL", "https://idp.example.com/.well-known/jwks.json")
    container.reset()
    assert cli.main(["token", "create", "--sub", "alice"]) == 2
    assert "tokens of an identity provider (JWKS); get them from it" in capsys.readouterr().err


@pytest.mark.parametrize("algorithm", ["HS256,RS256", "RS512", "none", ""])
def test_jwt_algorithm_is_hs256_or_public_key_algorithms_only(algorithm):
    env = {"KUBILITICS_ENV": "test", "KUBILITICS_JWKS_URL": "https://idp.example.com/jwks.json"}
    with pytest.raises(ValidationError, match="must be HS256, or RS256 and/or ES256"):
        Settings.from_env({**env, "KUBILITICS_JWT_ALGORITHM": algorithm})


def test_identity_provider_settings():
    settings = Settings.from_env(
        {
            "KUBILITICS_ENV": "test",
            "KUBILITICS_JWT_ALGORITHM": " ES256 , RS256",
            "KUBILITICS_JWKS_URL": "https://idp.example.com/jwks.json",
            "KUBILITICS_JWT_AUDIENCE": "api://kubilitics, cli-client",
            "KUBILITICS_JWT_GROUPS_CLAIM": "cognito:groups",
            "KUBILITICS_JWKS_TIMEOUT_SECONDS": "3",
        }
    )
    assert (settings.jwt_algorithm, settings.uses_identity_provider) == ("ES256,RS256", True)
    assert settings.jwt_audiences == ("api://kubilitics", "cli-client")
    assert (settings.jwt_groups_claim, settings.jwt_scope_claim, settings.jwks_timeout_seconds) == (
        "cognito:groups",
        "scope",
        3.0,
    )
    with pytest.raises(ValidationError, match="ES256 needs KUBILITICS_JWKS_URL"):  # in every environment
        Settings.from_env({"KUBILITICS_ENV": "development", "KUBILITICS_JWT_ALGORITHM": "ES256"})
