"""Erasure's scrubbing of records (pure): contact details and free text go, the customer's
id becomes its pseudonym, amounts and other customers stay; and database driver errors
reach logs and dead letters as codes and ids only."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from pymongo.errors import BulkWriteError, DuplicateKeyError

from schemas.erasure import ErasureRequest
from services.common.adapters.erasure import belongs
from services.common.erasure import ErasureKeyMissingError, Pseudonyms, Scrub, erased_letter
from services.common.errors import describe_error, redact_driver_errors
from tests.factories import customer, order_delivered

pytestmark = pytest.mark.unit
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PSEUDONYMS = Pseudonyms(SecretStr("pseudonym-key-for-unit-tests-0001"))


def test_a_pseudonym_is_stable_keyed_and_never_the_id() -> None:
    first = PSEUDONYMS.of("c-1")
    assert first == PSEUDONYMS.of("c-1")
    assert first != PSEUDONYMS.of("c-2")
    assert "c-1" not in first
    assert first != Pseudonyms(SecretStr("another-key-entirely-000000000001")).of("c-1")
    with pytest.raises(ErasureKeyMissingError):
        Pseudonyms(None).of("c-1")


def test_contacts_names_and_free_text_go_and_the_money_stays() -> None:
    snapshot = customer("c-1", email="ada@example.org") | {
        "name": "Ada Lovelace", "address": {"street": "12 St James's Square"}}
    snapshot["contact"]["phone"] = "+44 20 7946 0991"
    decision = {"decision_id": "d-1", "incident": {"customer": snapshot, "summary": "Ada rang"},
                "total_value": {"amount": "12.50", "currency": "EUR"}}
    doc = {"_id": "d-1", "customer_id": "c-1", "value": "12.50",
           "decision": json.dumps(decision), "other": "c-12", "note": "called Ada"}
    scrub = Scrub("c-1", PSEUDONYMS.of("c-1"))
    clean = scrub.value(doc)
    text = json.dumps(clean)
    for detail in ("ada@example.org", "+44 20 7946 0991", "Ada Lovelace", "St James", "Ada"):
        assert detail not in text
    assert clean["customer_id"] == PSEUDONYMS.of("c-1")
    assert clean["value"] == "12.50"
    assert clean["other"] == "c-12"  # another customer's id is not this one's
    inner = json.loads(clean["decision"])
    assert inner["incident"]["customer"]["id"] == PSEUDONYMS.of("c-1")
    assert inner["total_value"] == {"amount": "12.50", "currency": "EUR"}
    assert {"ada@example.org", "+44 20 7946 0991", "Ada Lovelace"} <= scrub.removed
    assert scrub.value(clean) == clean  # idempotent


def test_scrubbed_contracts_still_validate_and_keep_the_policy_s_words() -> None:
    from schemas.decision import Action, Review, RuleTrace

    scrub = Scrub("c-1", PSEUDONYMS.of("c-1"))
    review = Review.model_validate(scrub.value(
        {"verdict": "approved", "reviewer": "r-1", "reason": "Ada called, sounded upset",
         "at": AT.isoformat()}))
    assert review.reason == "[erased]"
    trace = RuleTrace.model_validate(scrub.value(
        {"rule_id": "late-2h", "matched": True, "reason": "delay of 150 min >= 120"}))
    assert trace.reason == "delay of 150 min >= 120"
    action = Action.model_validate(scrub.value(
        {"position": 0, "idempotency_key": "k", "kind": "points", "points": 200,
         "value": {"amount": "2.00", "currency": "EUR"}, "note": "200 points",
         "rule_id": "late-2h"}))
    assert action.note == "200 points"
    credit = scrub.value({"customer_id": "c-1", "points": 200, "reason": "delivery_delayed",
                          "note": "Called, she was upset"})
    assert credit["reason"] == "delivery_delayed"  # a code, not free text
    assert credit["note"] == "[erased]"


def test_records_of_another_tenant_are_not_the_customer_s() -> None:
    request = ErasureRequest(erasure_id="e-1", customer_id="c-1", tenant="shop-a",
                             requested_by="admin", requested_at=AT)
    assert belongs({"incident": json.dumps({"tenant": "shop-a"})}, request, "default")
    assert not belongs({"incident": json.dumps({"tenant": "shop-b"})}, request, "default")
    assert not belongs({"customer_id": "c-1"}, request, "default")
    assert belongs({"customer_id": "c-1"}, request.model_copy(update={"tenant": "default"}),
                   "default")


def test_an_erased_dead_letter_keeps_its_id_and_loses_the_customer() -> None:
    import base64

    from schemas.deadletter import DeadLetter, DeadLetterReason

    raw = json.dumps(order_delivered("c-1", "o-1", promised=AT, delivered=AT)).encode()
    letter = DeadLetter(dead_letter_id="dl-1", service="intake",
                        reason=DeadLetterReason.invalid, error="data.total: c-1 is bad",
                        topic="t", partition=0, offset=3,
                        key_b64=base64.b64encode(b"c-1").decode(),
                        value_b64=base64.b64encode(raw).decode(), failed_at=AT)
    scrub = Scrub("c-1", PSEUDONYMS.of("c-1"))
    clean = erased_letter(letter, scrub)
    assert clean.dead_letter_id == "dl-1"
    assert clean.erased
    assert clean.truncated
    everything = base64.b64decode(clean.value_b64) + base64.b64decode(clean.key_b64 or "")
    assert b"c-1" not in everything
    assert b"c-1@example.org" not in everything
    assert "c-1" not in clean.error


def _bulk_error() -> BulkWriteError:
    return BulkWriteError({"writeErrors": [
        {"index": 0, "code": 11000, "errmsg": 'E11000 dup key: { _id: "r-1" }',
         "op": {"_id": "r-1", "customer": {"contact": {"email": "ada@example.org"}}}}],
        "writeConcernErrors": [], "nInserted": 0})


def test_a_bulk_write_error_is_told_by_codes_and_ids() -> None:
    text = describe_error(_bulk_error())
    assert "ada@example.org" not in text
    assert "11000" in text
    assert "r-1" in text
    dup = DuplicateKeyError('E11000 dup key: { email: "ada@example.org" }', 11000,
                            {"keyValue": {"email": "ada@example.org"}})
    assert "ada@example.org" not in describe_error(dup)
    assert describe_error(ValueError("plain")) == "ValueError: plain"


def test_a_logged_driver_error_carries_no_document(caplog: pytest.LogCaptureFixture) -> None:
    redact_driver_errors()
    log = logging.getLogger("amends.test.redaction")
    def record() -> None:
        raise RuntimeError("while recording") from _bulk_error()

    with caplog.at_level(logging.DEBUG):
        try:
            record()
        except RuntimeError:
            log.exception("batch failed")
    assert "batch failed" in caplog.text
    assert "11000" in caplog.text
    assert "ada@example.org" not in caplog.text
