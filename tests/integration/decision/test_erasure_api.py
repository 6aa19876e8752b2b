"""Decision's erasure API on the real broker and database: only an admin of the customer's
tenant may ask; the request is published for every service and audited once, with who
asked and from where, and with the customer's pseudonym, never their id."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from amends.cli import app as cli
from services.common.access import Role
from services.common.adapters.mongo import Doc
from services.common.erasure import Pseudonyms
from services.decision.app import create_app as decision_app
from services.decision.settings import DecisionSettings
from tests import auth
from tests.auth import PSEUDONYM_KEY
from tests.infra import Infra
from tests.kafka_tools import collect
from tests.pipeline import Topics, lifespans, settings_for
from tests.servers import served_here

pytestmark = pytest.mark.integration
BODY = {"reason": "GDPR art. 17, ticket T-42"}


def api(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://decision")


async def test_erasure_is_for_admins_of_the_customer_s_tenant_and_is_audited_once(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    app = decision_app(settings)
    path = f"/v1/customers/{suffix}-c1/erasure"
    async with lifespans([app]), api(app) as client:
        refused = await client.post(path, json=BODY)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["check"] == "credentials"
        for role in (Role.viewer, Role.support, Role.reviewer):
            answer = await client.post(path, json=BODY, headers=auth.headers(role))
            assert answer.status_code == 403, role
            assert answer.json()["check"] == "role"
        other = await client.post(path, json=BODY | {"tenant": "shop-b"},
                                  headers=auth.headers(Role.admin, "shop-a"))
        assert other.status_code == 403
        assert other.json()["check"] == "tenant"
        no_reason = await client.post(path, json={}, headers=auth.headers(Role.admin))
        assert no_reason.status_code == 422

        first = await client.post(path, json=BODY, headers=auth.headers(Role.admin, "shop-a"))
        again = await client.post(path, json=BODY, headers=auth.headers(Role.admin, "shop-a"))
        assert first.status_code == again.status_code == 202
        accepted = first.json()
        assert accepted["tenant"] == "shop-a"
        assert again.json()["erasure_id"] == accepted["erasure_id"]
        assert accepted["reports_from"] == ["intake", "decision", "fulfilment"]

    requests = await collect(infra.kafka_bootstrap, topics.erasures,
                             lambda seen: len(seen) >= 2, settle_s=0.5)
    assert {r["data"]["erasure_id"] for r in requests} == {accepted["erasure_id"]}
    assert requests[0]["data"]["customer_id"] == f"{suffix}-c1"
    assert requests[0]["data"]["requested_by"] == auth.subject(Role.admin, "shop-a")
    assert requests[0]["data"]["tenant"] == "shop-a"

    audit = await collect(infra.kafka_bootstrap, topics.audit, lambda seen: len(seen) >= 1,
                          settle_s=0.5)
    asked = [a["data"] for a in audit if a["data"]["after"].get("phase") == "requested"]
    assert len(asked) == 1  # the retry is the same entry, published once
    entry = asked[0]
    assert entry["action"] == "erasure"
    assert entry["actor"] == auth.subject(Role.admin, "shop-a")
    assert entry["target"] == f"erasure:{accepted['erasure_id']}"
    assert entry["customer_id"] == Pseudonyms(PSEUDONYM_KEY).of(f"{suffix}-c1")
    assert entry["address"]
    assert f"{suffix}-c1" not in str(entry)
    stored = mongo[f"amends_test_{suffix}_decision"]["audit"]
    assert await stored.count_documents({"_id": entry["audit_id"]}) == 1


async def test_erasure_is_refused_without_a_pseudonym_key(infra: Infra, suffix: str) -> None:
    _, settings, _ = settings_for(infra, Topics.unique(suffix), f"amends_test_{suffix}")
    app = decision_app(DecisionSettings(**{**settings.model_dump(),
                                           "erasure_pseudonym_key": None}))
    async with api(app) as client:
        answer = await client.post("/v1/customers/c-1/erasure", json=BODY,
                                   headers=auth.headers(Role.admin))
    assert answer.status_code == 503
    assert answer.json()["check"] == "erasure_key"


async def test_the_cli_fails_when_a_service_does_not_report(infra: Infra, suffix: str) -> None:
    """Decision alone runs: it reports; intake and fulfilment do not, and the tool says so
    and exits 1."""
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    app = decision_app(settings)
    async with lifespans([app]), served_here(app) as url:
        env = {"AMENDS_TOKEN": auth.headers(Role.admin)["Authorization"].removeprefix(
            "Bearer "), "AMENDS_DECISION_URL": url,
            "AMENDS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap, "AMENDS_AUDIT_TOPIC": topics.audit}
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["customer", "erase", f"{suffix}-c9", "--reason", "T-9",
                                      "--timeout", "8"], env=env)
        unauthenticated = await asyncio.to_thread(
            CliRunner().invoke, cli, ["customer", "erase", f"{suffix}-c9", "--reason", "T-9"],
            env=env | {"AMENDS_TOKEN": "amk_not-a-key"})
    assert result.exit_code == 1, result.output
    assert "not reported within 8 s: intake, fulfilment" in result.output
    assert "decision" in result.output
    assert unauthenticated.exit_code == 1
    assert "not authenticated (401" in unauthenticated.output, unauthenticated.output
