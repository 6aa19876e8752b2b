"""Fulfilment's HTTP API on the real database: vouchers issued once, redeemed once (by the
shop's checkout with a support key), and a customer's case."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from pymongo import AsyncMongoClient

from schemas.common import Money
from services.common.access import Role
from services.common.adapters.mongo import Doc
from services.fulfilment.adapters.vouchers import VoucherStore
from services.fulfilment.vouchers import Voucher, VoucherError, VoucherStatus
from tests import auth
from tests.factories import late_and_on_time
from tests.infra import Infra
from tests.kafka_tools import as_json, collect, produce
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                             base_url="http://fulfilment")


async def test_a_voucher_is_redeemed_once(infra: Infra, suffix: str) -> None:
    async with running_pipeline(infra, suffix) as pipeline, _client(pipeline.fulfilment) as api:
        store = VoucherStore(pipeline.fulfilment.state.runtime.db)
        now = datetime.now(UTC)
        voucher = await store.issue(action_key=f"d-{suffix}:1", customer_id="c-1",
                                    amount=Money.of("10.00", "EUR"), percent=None,
                                    currency="EUR", issued_at=now,
                                    expires_at=now + timedelta(days=90), reason="goodwill")
        code = voucher.code
        viewer, checkout = auth.headers(Role.viewer), auth.headers(Role.support)
        looked_up = await api.get(f"/v1/vouchers/{code.lower()}", headers=viewer)
        assert looked_up.json()["status"] == "active"

        attempts = await asyncio.gather(*(
            api.post(f"/v1/vouchers/{code}/redeem", headers=checkout,
                     json={"order_id": f"o-{i}",
                           "order_total": {"amount": "30.00", "currency": "EUR"}})
            for i in range(12)))
        statuses = sorted(r.status_code for r in attempts)
        assert statuses == [200] + [409] * 11
        winner = next(r for r in attempts if r.status_code == 200).json()
        assert winner["discount"] == {"amount": "10.00", "currency": "EUR"}
        looked_up = await api.get(f"/v1/vouchers/{code}", headers=viewer)
        assert looked_up.json()["status"] == "redeemed"
        assert looked_up.json()["redeemed_order_id"] == winner["order_id"]

        bad = await api.post(f"/v1/vouchers/{code}/redeem", headers=checkout,
                             json={"order_id": ""})
        assert bad.status_code == 422
        assert (await api.get("/v1/vouchers/AMD-NOPE", headers=viewer)).status_code == 404
        # Vouchers are issued by decisions only (decision's manual vouchers): no such route.
        minted = await api.post("/v1/vouchers", headers=auth.headers(Role.admin), json={
            "request_id": "r-1", "customer_id": "c-1", "currency": "EUR",
            "amount": {"amount": "1000000.00", "currency": "EUR"}})
        assert minted.status_code in {404, 405}
        assert await store.vouchers.count_documents({}) == 1


async def test_an_expired_voucher_is_refused(mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    store = VoucherStore(mongo[f"vouchers_{suffix}"])
    await store.create_indexes()
    issued = datetime(2026, 11, 1, tzinfo=UTC)
    voucher = await store.issue(action_key="k-1", customer_id="c-1", amount=None,
                                percent=Decimal(15), currency="EUR", issued_at=issued,
                                expires_at=issued + timedelta(days=30), reason="late")
    before = await store.get(voucher.code, issued + timedelta(days=29))
    assert before is not None
    assert before.status is VoucherStatus.active
    assert before.discount_on(Money.of("80.00", "EUR")) == Money.of("12.00", "EUR")
    with pytest.raises(VoucherError, match="expired"):
        await store.redeem(voucher.code, "o-1", None, issued + timedelta(days=31))


async def test_a_batch_of_vouchers_is_one_insert_and_keeps_earlier_codes(
        mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    store = VoucherStore(mongo[f"vouchers_{suffix}"])
    await store.create_indexes()
    issued = datetime(2026, 11, 1, tzinfo=UTC)
    earlier = await store.issue(action_key="k-1", customer_id="c-1",
                                amount=Money.of("5.00", "EUR"), percent=None, currency="EUR",
                                issued_at=issued, expires_at=issued + timedelta(days=30),
                                reason="late")
    requests = [Voucher(code="", action_key=key, customer_id="c-1",
                        amount=Money.of("7.00", "EUR"), currency="EUR", issued_at=issued,
                        expires_at=issued + timedelta(days=60), reason="late")
                for key in ("k-1", "k-2", "k-3", "k-2")]
    batch = await store.issue_all(requests)
    again = await store.issue_all(requests)
    assert sorted(batch) == ["k-1", "k-2", "k-3"]
    assert batch["k-1"] == earlier  # issued before: the same code, amount and expiry
    assert {k: v.code for k, v in again.items()} == {k: v.code for k, v in batch.items()}
    assert len({v.code for v in batch.values()}) == 3
    assert await store.vouchers.count_documents({}) == 3
    assert batch["k-2"].amount == Money.of("7.00", "EUR")
    with pytest.raises(VoucherError, match="either an amount or a percent"):
        await store.issue_all([requests[0].model_copy(update={"percent": Decimal(5)})])


async def test_a_customers_case_shows_what_was_done(infra: Infra, suffix: str) -> None:
    late, _ = late_and_on_time(suffix, datetime(2026, 11, 2, 9, tzinfo=UTC), 1, 0)
    customer = late[0]["subject"]
    async with running_pipeline(infra, suffix) as pipeline, _client(pipeline.fulfilment) as api:
        await produce(infra.kafka_bootstrap, pipeline.topics.orders, as_json(late))
        await collect(infra.kafka_bootstrap, pipeline.topics.outcomes, lambda s: len(s) >= 2)
        viewer = auth.headers(Role.viewer)
        case = (await api.get(f"/v1/customers/{customer}/case", headers=viewer)).json()
        empty = (await api.get("/v1/customers/nobody/case", headers=viewer)).json()
    assert case["points_balance"] > 0
    assert [i["type"] for i in case["incidents"]] == ["delivery_delayed"]
    assert len(case["decisions"]) == 1
    assert sorted(a["kind"] for a in case["actions"]) == ["apology", "points"]
    assert all(a["status"] == "succeeded" for a in case["actions"])
    assert len(case["messages"]) == 1
    assert empty["points_balance"] == 0
    assert empty["actions"] == []
