"""Erasing in one service's database on the real MongoDB-wire server: the customer's records
of the request's tenant are pseudonymised (or deleted where asked), those linked to them by
id too; another tenant's customer of the same id and other customers are left alone; a
second run changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pymongo import AsyncMongoClient

from schemas.erasure import ErasureRequest
from services.common.adapters.erasure import erase_in_database
from services.common.adapters.mongo import Doc
from services.common.erasure import Pseudonyms, Scrub
from tests.auth import PSEUDONYM_KEY
from tests.factories import customer
from tests.infra import Infra

pytestmark = pytest.mark.integration
AT = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _decision(decision_id: str, customer_id: str, tenant: str | None, email: str) -> Doc:
    body = {"decision_id": decision_id, "incident": {
        "customer": customer(customer_id, email=email), "tenant": tenant,
        "summary": "rang twice, very upset"}, "total_value": {"amount": "5.00",
                                                               "currency": "EUR"}}
    return {"_id": decision_id, "customer_id": customer_id, "value": "5.00",
            "decision": json.dumps(body)}


async def test_the_customer_of_the_tenant_is_pseudonymised_and_no_one_else(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    db = mongo[f"amends_test_{suffix}_decision"]
    await db["decisions"].insert_many([
        _decision("d-a", "c-1", "shop-a", "one@shop-a.example"),
        _decision("d-b", "c-1", "shop-b", "one@shop-b.example"),
        _decision("d-x", "c-12", "shop-a", "twelve@shop-a.example")])
    await db["reviews"].insert_one({"_id": "d-a", "reviewer": "r-1", "reason": "Ada's call"})
    await db["customers_decided"].insert_many([{"_id": "c-1"}, {"_id": "c-12"}])
    await db["checks"].insert_one({"_id": "k-1", "customer": {"id": "c-1"},
                                   "tenant": "shop-a"})
    request = ErasureRequest(erasure_id="e-1", customer_id="c-1", tenant="shop-a",
                             requested_by="admin-1", requested_at=AT)
    pseudonym = Pseudonyms(PSEUDONYM_KEY).of("c-1")

    scrub = Scrub("c-1", pseudonym)
    report = await erase_in_database(db, request, scrub, default_tenant="default",
                                     delete={"checks"})
    # c-1's decision of shop-a and its review are kept, pseudonymised. A mark keyed by the
    # customer names no tenant: it is the default tenant's (and shop-b's c-1 shares it).
    assert report.scrubbed == {"decisions": 1, "reviews": 1}
    assert report.deleted == {"checks": 1}
    erased = await db["decisions"].find_one({"_id": "d-a"})
    assert erased is not None
    assert erased["customer_id"] == pseudonym
    assert erased["value"] == "5.00"
    assert "one@shop-a.example" not in json.dumps(erased)
    assert "rang twice" not in erased["decision"]
    assert "one@shop-a.example" in scrub.removed
    review = await db["reviews"].find_one({"_id": "d-a"})
    assert review == {"_id": "d-a", "reviewer": "r-1", "reason": "[erased]"}
    assert {d["_id"] async for d in db["customers_decided"].find({})} == {"c-1", "c-12"}
    # shop-b's c-1 and c-12 are untouched
    assert (await db["decisions"].find_one({"_id": "d-b"})) == _decision(
        "d-b", "c-1", "shop-b", "one@shop-b.example")
    assert (await db["decisions"].find_one({"_id": "d-x"})) == _decision(
        "d-x", "c-12", "shop-a", "twelve@shop-a.example")

    again = await erase_in_database(db, request, Scrub("c-1", pseudonym),
                                    default_tenant="default", delete={"checks"})
    assert again.scrubbed == {}
    assert again.deleted == {}

    default = request.model_copy(update={"tenant": "default", "erasure_id": "e-2"})
    marks = await erase_in_database(db, default, Scrub("c-1", pseudonym),
                                    default_tenant="default")
    assert marks.scrubbed == {"customers_decided": 1}
    assert {d["_id"] async for d in db["customers_decided"].find({})} == {pseudonym, "c-12"}
