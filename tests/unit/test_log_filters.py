"""The log filters every service installs: a library's line keeps what it says about the
operation and loses the body; a line of a shape they do not know is dropped."""

from __future__ import annotations

import logging

import pytest

from services.common.logs import (
    CommandsWithoutDocuments,
    RecordsWithoutValues,
    RequestsWithoutQueries,
)

EMAIL = "someone@example.org"


def record(msg: object, *args: object) -> logging.LogRecord:
    return logging.LogRecord("x", logging.DEBUG, __file__, 1, msg, args or None, None)


def test_a_command_line_keeps_its_name_and_loses_its_documents() -> None:
    line = record('{"commandName": "insert", "durationMS": 1.5, '
                  f'"command": "{{\\"documents\\": [{{\\"email\\": \\"{EMAIL}\\"}}]}}"}}')
    assert CommandsWithoutDocuments().filter(line)
    assert EMAIL not in line.getMessage()
    assert '"commandName": "insert"' in line.getMessage()
    assert not CommandsWithoutDocuments().filter(record(f"not json {EMAIL}"))


def test_a_sent_record_line_keeps_its_key_and_loses_its_value() -> None:
    line = record("Sending (key=%s value=%s) to %s", b"c-1", EMAIL.encode(), "tp")
    assert RecordsWithoutValues().filter(line)
    assert line.getMessage() == f"Sending (key=b'c-1' value=<{len(EMAIL)} bytes>) to tp"
    assert not RecordsWithoutValues().filter(record("value=%s", EMAIL))
    assert RecordsWithoutValues().filter(record("Sending batch to %s", "tp"))


@pytest.mark.parametrize(("path", "shown"), [
    ("/v1/customer/decisions/d-1?token=eyJ.secret.sig", "/v1/customer/decisions/d-1?<omitted>"),
    ("/health", "/health")])
def test_an_access_line_loses_its_query(path: str, shown: str) -> None:
    line = record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", path, "1.1", 200)
    assert RequestsWithoutQueries().filter(line)
    assert line.getMessage() == f'127.0.0.1:1 - "GET {shown} HTTP/1.1" 200'
    assert not RequestsWithoutQueries().filter(record("GET %s", path))
