"""Who may use fulfilment's API, on the real services (broker, database): no credentials is
401, a role too low is 403 "role", another tenant's record is 403 "tenant", each with a
problem body naming the check; a customer's case shows only the records of the operator's
tenants, a manual voucher (a decision) with its reason, and no customer link's token."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from schemas.common import Money
from services.common.access import PROBLEM_JSON, Role
from services.fulfilment.adapters.vouchers import VoucherStore
from services.fulfilment.http import LINK_PLACEHOLDER
from tests import auth
from tests.infra import Infra
from tests.integration.fulfilment_api.decisions import manual_voucher, voucher_policy, waited
from tests.kafka_tools import collect, incident_events, produce
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                             base_url="http://fulfilment")


def refused(response: httpx.Response, status: int, check: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["status"] == status
    assert problem["check"] == check, problem
    assert problem["detail"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_every_endpoint_needs_an_operator_with_the_role_and_tenant(
        infra: Infra, suffix: str) -> None:
    async with running_pipeline(infra, suffix) as pipeline, _client(pipeline.fulfilment) as api:
        vouchers = VoucherStore(pipeline.fulfilment.state.runtime.db)
        voucher = await vouchers.issue(
            action_key=f"d-{suffix}:1", customer_id="c-1", amount=Money.of("5.00", "EUR"),
            percent=None, currency="EUR", issued_at=T0, expires_at=T0 + timedelta(days=3650),
            reason="late", tenant="shop-a")
        code = voucher.code
        redeem = {"order_id": "o-9", "order_total": {"amount": "20.00", "currency": "EUR"}}

        async def call(method: str, path: str, headers: Mapping[str, str] | None = None
                       ) -> httpx.Response:
            body = redeem if method == "POST" else None
            return await api.request(method, path, headers=headers, json=body)

        endpoints = [("GET", f"/v1/vouchers/{code}", Role.viewer),
                     ("POST", f"/v1/vouchers/{code}/redeem", Role.support),
                     ("GET", "/v1/customers/c-1/case", Role.viewer),
                     ("GET", "/v1/outages/o-1/progress", Role.viewer)]
        for method, path, _ in endpoints:
            refused(await call(method, path), 401, "credentials")
            refused(await call(method, path, {"Authorization": "Bearer amk_not-a-key"}),
                    401, "api_key")
            refused(await call(method, path, {"X-API-Key": "amk_not-a-key"}), 401, "api_key")
            refused(await call(method, path, {"Authorization": "Bearer e30.e30.e30"}),
                    401, "token")
        refused(await call("POST", f"/v1/vouchers/{code}/redeem",
                           auth.headers(Role.viewer, "shop-a")), 403, "role")
        refused(await call("GET", f"/v1/vouchers/{code}", auth.headers(Role.admin, "shop-b")),
                403, "tenant")
        refused(await call("GET", f"/v1/vouchers/{code}", auth.headers(Role.admin, "default")),
                403, "tenant")
        refused(await call("POST", f"/v1/vouchers/{code}/redeem",
                           auth.headers(Role.support, "shop-b")), 403, "tenant")
        assert await vouchers.redemptions.count_documents({}) == 0  # nothing was redeemed

        assert (await call("GET", f"/v1/vouchers/{code}",
                           auth.headers(Role.viewer, "shop-a"))).status_code == 200
        redeemed = await call("POST", f"/v1/vouchers/{code}/redeem",
                              auth.headers(Role.support, "shop-a"))
        assert redeemed.status_code == 200, redeemed.text
        for open_path in ("/metrics", "/alive", "/health"):
            assert (await api.get(open_path)).status_code == 200, open_path
        assert (await api.get("/openapi.json")).status_code == 401
        document = (await api.get("/openapi.json", headers=auth.headers(Role.viewer))).json()

    # Every operator operation declares the bearer scheme; the customer's page does not
    # (its token is the link's).
    paths = [p for p in document["paths"] if p.startswith("/v1/")]
    assert len(paths) == 5
    for path in paths:
        for operation in document["paths"][path].values():
            secured = bool(operation.get("security"))
            assert secured == (not path.startswith("/v1/customer/")), (path, operation)


async def test_the_case_shows_only_the_records_of_the_operators_tenants(
        infra: Infra, suffix: str) -> None:
    customer = f"{suffix}-both"
    async with running_pipeline(infra, suffix, policy=voucher_policy("tenants")) as pipeline, \
            _client(pipeline.fulfilment) as api:
        await produce(infra.kafka_bootstrap, pipeline.topics.incidents, incident_events([
            waited(customer, f"a-{suffix}", at=T0, tenant="shop-a"),
            waited(customer, f"b-{suffix}", at=T0, tenant="shop-b")]))
        # A manual voucher, as decision's POST /v1/manual-vouchers publishes it.
        await produce(infra.kafka_bootstrap, pipeline.topics.decisions, [manual_voucher(
            customer, amount="7.50", reason="the courier was rude on the phone", at=T0,
            tenant="shop-a")])
        # Two decisions of three actions each, and the manual voucher's one.
        await collect(infra.kafka_bootstrap, pipeline.topics.outcomes, lambda s: len(s) >= 7)
        path = f"/v1/customers/{customer}/case"
        shop_a = (await api.get(path, headers=auth.headers(Role.viewer, "shop-a"))).json()
        shop_b = (await api.get(path, headers=auth.headers(Role.viewer, "shop-b"))).json()
        every = (await api.get(path, headers=auth.headers(Role.viewer))).json()
        default = (await api.get(path, headers=auth.headers(Role.viewer, "default"))).json()

    def tenants(case: dict[str, object]) -> list[object]:
        incidents = case["incidents"]
        assert isinstance(incidents, list)
        return sorted(i["tenant"] for i in incidents)

    assert tenants(shop_a) == ["shop-a", "shop-a"]
    assert tenants(shop_b) == ["shop-b"]
    assert tenants(every) == ["shop-a", "shop-a", "shop-b"]
    assert tenants(default) == []
    assert default["vouchers"] == default["actions"] == default["messages"] == []
    assert default["points_balance"] == 0
    assert shop_a["points_balance"] == shop_b["points_balance"] == 100
    assert every["points_balance"] == 200
    assert len(shop_a["vouchers"]) == 2
    assert len(shop_b["vouchers"]) == 1
    assert {v["tenant"] for v in every["vouchers"]} == {"shop-a", "shop-b"}
    [manual] = [v for v in shop_a["vouchers"] if v["amount"]["amount"] == "7.50"]
    assert manual["reason"] == "the courier was rude on the phone"
    assert {a["decision_id"] for a in shop_b["actions"]} == {
        d["decision_id"] for d in shop_b["decisions"]}
    assert len(shop_a["actions"]) == 4
    assert len(shop_b["messages"]) == 1
    # Messages keep the page link's place, never its token: a viewer is not the customer.
    [message] = shop_b["messages"]
    assert LINK_PLACEHOLDER in message["text"]
    assert "token=eyJ" not in message["text"]
