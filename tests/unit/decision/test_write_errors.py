"""A bulk write error is told by codes and ids: PyMongo's own text of it carries the
failing documents, customers' contact details among them."""

from __future__ import annotations

import traceback

import pytest
from pymongo.errors import BulkWriteError

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
