"""A bulk write error is told by codes and ids: PyMongo's own text of it carries the
failing documents, customers' contact details among them."""

from __future__ import annotations

import traceback

import pytest
from pydantic import ValidationError
from pymongo.errors import BulkWriteError, OperationFailure

from schemas.common import CustomerSnapshot
from services.decision.adapters.mongo import StoreWriteError, quiet_write_errors

EMAIL = "ana.lopez@example.org"


def bulk_error() -> BulkWriteError:
    return BulkWriteError({"writeErrors": [
        {"index": 0, "code": 11000, "errmsg": f"E11000 duplicate key: {EMAIL}",
         "op": {"_id": "dec-1", "decision": f'{{"contact": {{"email": "{EMAIL}"}}}}'}},
        {"index": 1, "code": 2, "errmsg": "bad value",
         "op": {"q": {"_id": "dec-2"}, "u": {"$set": {"email": EMAIL}}}}],
        "writeConcernErrors": [], "nInserted": 0})


def test_the_documents_of_a_bulk_write_error_are_left_behind() -> None:
    assert EMAIL in str(bulk_error())  # why this exists: PyMongo's text has the documents
    with pytest.raises(StoreWriteError) as raised, quiet_write_errors():
        raise bulk_error()
    told = str(raised.value)
    assert "code 11000 at 'dec-1'" in told
    assert "code 2 at 'dec-2'" in told
    printed = "".join(traceback.format_exception(raised.value))
    assert EMAIL not in printed
    assert "writeErrors" not in printed


def test_other_refusals_and_validation_errors_leave_their_values_behind() -> None:
    refused = OperationFailure("Document failed validation", 121, {
        "code": 121, "codeName": "DocumentValidationFailure",
        "errInfo": {"failingDocumentId": "dec-3", "details": {"email": EMAIL}}})
    assert EMAIL in str(refused)
    with pytest.raises(StoreWriteError) as raised, quiet_write_errors():
        raise refused
    assert str(raised.value) == "the database refused: code 121 DocumentValidationFailure"
    try:
        CustomerSnapshot.model_validate({"id": "c-1", "locale": EMAIL})
    except ValidationError as exc:
        invalid = exc
    assert EMAIL in str(invalid)
    with pytest.raises(ValueError, match="locale") as told, quiet_write_errors():
        raise invalid
    assert EMAIL not in "".join(traceback.format_exception(told.value))
