"""Operator credentials (JWTs by static key or JWKS, API keys) and customer links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from services.common.access import (
    AccessDeniedError,
    ApiKey,
    Authenticator,
    AuthSettings,
    Role,
    key_digest,
    new_api_key,
)
from services.common.links import CustomerLinks

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _token(key: Any, algorithm: str = "HS256", *, kid: str | None = None,
           **claims: Any) -> str:
    body = {"sub": "ana", "roles": ["reviewer"], "tenant": "shop-a",
            "exp": int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())} | claims
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


async def _refused(auth: Authenticator, headers: dict[str, str]) -> AccessDeniedError:
    with pytest.raises(AccessDeniedError) as caught:
        await auth.authenticate(headers)
    return caught.value


async def test_a_jwt_signed_with_the_static_secret_gives_its_subject_roles_and_tenant() -> None:
    auth = Authenticator(AuthSettings(jwt_key=SecretStr("s" * 32)))
    principal = await auth.authenticate({"authorization": f"Bearer {_token('s' * 32)}"})
    assert (principal.subject, principal.role, principal.tenant) == ("ana", Role.reviewer,
                                                                     "shop-a")
    assert principal.has(Role.support)
    assert not principal.has(Role.admin)


async def test_missing_forged_and_expired_tokens_are_401_naming_the_check() -> None:
    auth = Authenticator(AuthSettings(jwt_key=SecretStr("s" * 32)))
    assert (await _refused(auth, {})).check == "credentials"
    forged = await _refused(auth, {"authorization": f"Bearer {_token('x' * 32)}"})
    assert (forged.status, forged.check) == (401, "token")
    old = _token("s" * 32, exp=int((datetime.now(UTC) - timedelta(hours=1)).timestamp()))
    expired = await _refused(auth, {"authorization": f"Bearer {old}"})
    assert (expired.status, expired.detail) == (401, "the token has expired")
    untenanted = _token("s" * 32, tenant=None)
    assert (await _refused(auth, {"authorization": f"Bearer {untenanted}"})).status == 403


async def test_a_jwks_issuer_key_verifies_and_an_unknown_kid_is_fetched_again() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    fetched: list[str] = []
    keys: list[dict[str, Any]] = []

    async def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return {"keys": keys}

    ticks = iter(range(0, 10_000, 20))
    auth = Authenticator(AuthSettings(jwks_url="http://issuer.invalid/jwks", issuer="idp",
                                      roles_claim="realm_access.roles"),
                         fetch_jwks=fetch, clock=lambda: float(next(ticks)))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    token = _token(pem, "RS256", kid="k2", iss="idp", roles=None,
                   realm_access={"roles": ["admin"]})
    assert (await _refused(auth, {"authorization": f"Bearer {token}"})).check == "token"
    keys.append(public_jwk | {"kid": "k2", "alg": "RS256", "use": "sig"})
    principal = await auth.authenticate({"authorization": f"Bearer {token}"})
    assert principal.role is Role.admin
    assert len(fetched) == 2


async def test_an_api_key_is_known_by_its_digest_alone() -> None:
    key = new_api_key()
    auth = Authenticator(AuthSettings(api_keys=[ApiKey(name="refund-script",
                                                       sha256=key_digest(key),
                                                       roles=[Role.support], tenant="*")]))
    principal = await auth.authenticate({"x-api-key": key})
    assert (principal.subject, principal.via, principal.tenant) == ("refund-script",
                                                                   "api_key", "*")
    assert (await auth.authenticate({"authorization": f"Bearer {key}"})) == principal
    assert (await _refused(auth, {"x-api-key": new_api_key()})).check == "api_key"


async def test_role_and_tenant_checks_are_403() -> None:
    auth = Authenticator(AuthSettings(jwt_key=SecretStr("s" * 32)))
    principal = await auth.authenticate({"authorization": f"Bearer {_token('s' * 32)}"})
    with pytest.raises(AccessDeniedError) as caught:
        auth.require(principal, Role.admin)
    assert (caught.value.status, caught.value.check) == (403, "role")
    auth.require_tenant(principal, "shop-a")
    with pytest.raises(AccessDeniedError) as caught:
        auth.require_tenant(principal, None)  # the default tenant's record
    assert caught.value.check == "tenant"
    assert auth.tenants(principal) == ["shop-a"]


def test_a_customer_link_names_one_decision_expires_and_survives_key_rotation() -> None:
    old = CustomerLinks({"2026-11": SecretStr("a" * 32)}, None, timedelta(days=30))
    token = old.sign("c-1", "d-1", NOW)
    rotated = CustomerLinks({"2026-11": SecretStr("a" * 32), "2026-12": SecretStr("b" * 32)},
                            None, timedelta(days=30))
    assert rotated.signing_kid == "2026-12"
    assert rotated.verify(token, "d-1", NOW).customer_id == "c-1"
    with pytest.raises(AccessDeniedError) as caught:
        rotated.verify(token, "d-2", NOW)
    assert (caught.value.status, caught.value.check) == (403, "link_decision")
    with pytest.raises(AccessDeniedError) as caught:
        rotated.verify(token, "d-1", NOW + timedelta(days=31))
    assert caught.value.check == "link_expired"
    forged = CustomerLinks({"2026-11": SecretStr("z" * 32)}, None, timedelta(days=30))
    with pytest.raises(AccessDeniedError) as caught:
        rotated.verify(forged.sign("c-1", "d-1", NOW), "d-1", NOW)
    assert (caught.value.status, caught.value.check) == (401, "link")


@pytest.mark.parametrize("service", ["decision", "fulfilment"])
async def test_the_operator_apis_document_themselves_to_operators_only(service: str) -> None:
    import httpx

    from services.decision.app import create_app as decision_app
    from services.decision.settings import DecisionSettings
    from services.fulfilment.app import create_app as fulfilment_app
    from services.fulfilment.settings import FulfilmentSettings
    from services.intake.app import create_app as intake_app
    from services.intake.settings import IntakeSettings
    from tests import auth

    app = (decision_app(DecisionSettings(**auth.settings())) if service == "decision"
           else fulfilment_app(FulfilmentSettings(**auth.settings())))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://service") as client:
        refused = await client.get("/openapi.json")
        assert (refused.status_code, refused.json()["check"]) == (401, "credentials")
        document = await client.get("/openapi.json", headers=auth.headers(Role.viewer))
        assert document.json()["info"]["title"] == f"Amends {service}"
        for browsable in ("/docs", "/redoc"):
            assert (await client.get(browsable)).status_code == 404
        assert (await client.get("/alive")).status_code == 200
    # Intake's document is for the upstream systems that post to it: open.
    intake = intake_app(IntakeSettings(hmac_secrets={}, sources={}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=intake),
                                 base_url="http://intake") as client:
        assert (await client.get("/openapi.json")).status_code == 200
