"""No service logs personal data or a customer link's token, even at DEBUG: the three
services run in this process on the real broker and database, e-mail through a real SMTP
server (aiosmtpd), every library's logger at DEBUG, over a run whose events carry e-mails,
phones and names — a late delivery, an offer, bad records that are dead-lettered, duplicates
that make bulk inserts fail — and a customer opening their page by its link over real HTTP.
Every record is captured (its message with its arguments, its traceback text) and searched."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import re
import traceback
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc, StoreWriteError, insert_new
from services.common.runtime import server_config
from services.decision.domain.policy import parse_policy
from tests.clock import FakeClock
from tests.factories import delivered, incident, order_placed
from tests.infra import Infra
from tests.integration.fulfilment_api.test_follow_ups import mails
from tests.kafka_tools import as_json, collect, incident_events, produce
from tests.mail import Inbox, body
from tests.pipeline import running_pipeline
from tests.processes import free_port

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
EMAIL = "zoe.quintanilla-marsh@privacy-probe.example"
PHONE = "+37369123457"
NAME = "Zoë Quintanilla-Marsh"
# Loggers of everything a service runs on, all at DEBUG for the test.
LOGGERS = ("", "services", "faststream", "aiokafka", "pymongo", "httpx", "httpcore",
           "uvicorn", "uvicorn.access", "uvicorn.error", "asyncio",
           # Held at INFO by intake: set to DEBUG again once the services run.
           "pymongo.command", "aiokafka.producer.producer")
# The test's SMTP relay stands in for the provider's: its log is not a service's.
PEERS = ("mail.log",)
POLICY = parse_policy("""
version: privacy-test
currency: EUR
values: {point: "0.01"}
guards:
  incident_cap: 100
  customer_cap: 200
  daily_budget: 1000
rules:
  - id: late
    when: {type: [delivery_delayed]}
    because: for the delay
    grant:
      - points: 100
  - id: wait
    when: {type: [support_wait_exceeded]}
    because: for the wait
    grant:
      - voucher: {amount: 10, expires_days: 90}
    offer:
      deadline_hours: 72
      default: 1
      options:
        - label: a 15.00 EUR voucher
          grant: [{voucher: {amount: 15, expires_days: 90}}]
        - label: 500 loyalty points
          grant: [{points: 500}]
""")


class Everything(logging.Handler):
    """Keeps the full text of every record: the message with its arguments, the traceback
    and the stack, as any formatter could write them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []
        self.texts = logging.Formatter()
        self.attached: list[logging.Logger] = []
        self.levels = {name: logging.getLogger(name).level for name in LOGGERS}

    def at_debug(self) -> None:
        """Every logger of `LOGGERS` at DEBUG, and the handler on the root and on every
        logger that keeps its records to itself (FastStream's, say), those created since
        the last call included."""
        for name in LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
        known = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]
        for logger in [logging.getLogger(), *known]:
            # Checked on the logger itself: uvicorn empties its access logger's handlers.
            if isinstance(logger, logging.Logger) and self not in logger.handlers and (
                    logger is logging.getLogger() or not logger.propagate):
                logger.addHandler(self)
                self.attached.append(logger)

    def detach(self) -> None:
        for logger in self.attached:
            logger.removeHandler(self)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(PEERS):
            return
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.texts.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        self.lines.append((record.name, text))


@contextlib.contextmanager
def everything_at_debug() -> Iterator[Everything]:
    handler = Everything()
    handler.at_debug()
    try:
        yield handler
    finally:
        handler.detach()


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[int]:
    """`app` behind a real uvicorn server, configured as the services' `serve` does."""
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):  # uvicorn offers no event for "started"
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started, "the server did not start"
        yield port
    finally:
        server.should_exit = True
        await task


def open_page(port: int, path: str) -> tuple[int, bytes]:
    """A customer's browser: http.client logs nothing of its own."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def person(customer: dict[str, Any]) -> dict[str, Any]:
    """A customer snapshot carrying the contact details and a name (a field upstream
    systems add; ignored by the contract, kept in the raw bytes)."""
    return {**customer, "name": NAME,
            "contact": {"email": EMAIL, "phone": PHONE, "preferred_channel": "email"}}


def late_delivery(customer_id: str) -> list[dict[str, Any]]:
    placed = order_placed(customer_id, f"o-{customer_id}", at=T0 - timedelta(days=2),
                          promised=T0)
    arrived = delivered(customer_id, f"o-{customer_id}", at=T0 + timedelta(hours=5),
                        promised=T0)
    for event in (placed, arrived):
        event["data"]["customer"] = person(event["data"]["customer"])
    return [placed, arrived]


def long_wait(customer_id: str) -> dict[str, Any]:
    made = incident("support_wait_exceeded", customer_id=customer_id, detection="proactive",
                    fact=f"t-{customer_id}", wait_minutes=95, at=T0,
                    summary=f"{NAME} waited; call {PHONE} or write to {EMAIL}")
    made["customer"] = person(made["customer"])
    return made


def bad(key: str, event_type: str) -> tuple[str, bytes]:
    """A record that fails validation and carries personal data everywhere it can."""
    return key, json.dumps({
        "specversion": "1.0", "id": f"bad-{key}-{event_type}", "source": EMAIL,
        "type": event_type, "time": "yesterday", "subject": PHONE,
        "data": {"customer": {"id": key, "name": NAME, "contact": {"email": EMAIL}},
                 "note": f"{NAME} <{EMAIL}> {PHONE}", "total": {"amount": EMAIL}}}).encode()


async def test_no_service_logs_personal_data_or_a_link_token(
        infra: Infra, suffix: str, inbox: tuple[Inbox, int]) -> None:
    handler, smtp_port = inbox
    late, waiting = f"{suffix}-late", f"{suffix}-wait"
    clock = FakeClock(T0 + timedelta(hours=5, minutes=1))
    with everything_at_debug() as captured:
        async with running_pipeline(infra, suffix, clock=clock, policy=POLICY, fulfilment={
                "smtp_host": "127.0.0.1", "smtp_port": smtp_port}) as pipeline, \
                served(pipeline.fulfilment) as port:
            captured.at_debug()
            topics = pipeline.topics
            upstream = as_json(late_delivery(late))
            waits = incident_events([long_wait(waiting)])
            # Each twice: the second of each is a duplicate in every bulk insert.
            await produce(infra.kafka_bootstrap, topics.orders, upstream + upstream)
            await produce(infra.kafka_bootstrap, topics.incidents, waits + waits)
            await produce(infra.kafka_bootstrap, topics.orders,
                          [bad(late, "order.delivered")])
            await produce(infra.kafka_bootstrap, topics.incidents,
                          [bad(late, "amends.incident.detected")])
            await produce(infra.kafka_bootstrap, topics.decisions,
                          [bad(late, "amends.decision.made")])
            letters = await collect(infra.kafka_bootstrap, topics.deadletter,
                                    lambda seen: len(seen) >= 3)
            await collect(infra.kafka_bootstrap, topics.outcomes, lambda seen: len(seen) >= 4)
            received = await mails(handler, 2)
            links = [found.group(1) for mail in received if (found := re.search(
                r"http://127\.0\.0\.1:8003(/v1/customer/decisions/\S+\?token=([\w.-]+))",
                body(mail, "plain")))]
            assert links, [body(m, "plain") for m in received]
            status, page = await asyncio.to_thread(open_page, port, links[0])
            refused, _ = await asyncio.to_thread(open_page, port, links[0] + "x")
            await asyncio.sleep(1.0)  # the sweeps and consumers log on

    assert status == 200, page
    assert refused == 401
    assert {letter["data"]["service"] for letter in letters} == {"intake", "decision",
                                                                  "fulfilment"}
    tokens = [link.partition("token=")[2] for link in links]
    secrets = [EMAIL, PHONE, NAME, EMAIL.split("@", maxsplit=1)[0], PHONE.lstrip("+"), *tokens]
    leaks = [(name, secret, text[:300]) for name, text in captured.lines
             for secret in secrets if secret in text]
    assert not leaks, leaks
    # The capture saw what it searched: each service's own lines, the driver's commands
    # (inserts of the very documents that carry the data), the broker client's.
    names = {name for name, _ in captured.lines}
    assert {"services.common.messaging"} <= names, names
    assert any(n.startswith("aiokafka") for n in names), names
    assert any(n.startswith("faststream") for n in names), names
    commands = [text for name, text in captured.lines if name == "pymongo.command"]
    assert any('"commandName": "insert"' in text for text in commands), names
    assert any(text.startswith("Sending (key=") for name, text in captured.lines
               if name == "aiokafka.producer.producer")
    assert any("dead-lettered" in text for _, text in captured.lines)
    # The access log is off, but the capture's handler on its logger turned it on, as a log
    # shipper's would: the requests are there, their queries (the token) are not.
    access = [text for name, text in captured.lines if name == "uvicorn.access"]
    assert any("/v1/customer/decisions/" in t and "?<omitted>" in t for t in access), access


async def test_a_refused_bulk_write_tells_codes_and_ids_not_documents(
        mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    collection = mongo[f"privacy_{suffix}"]["records"]
    docs = [{"_id": "r-1", "email": EMAIL}, {"_id": "r-2", "$email": EMAIL, "name": NAME},
            {"_id": "r-1", "phone": PHONE}]
    with pytest.raises(StoreWriteError) as refused:
        await insert_new(collection, docs)
    text = "".join(traceback.format_exception(refused.value))
    assert "codes [2, 11000]" in text
    assert "ids r-2, r-1" in text
    assert not [s for s in (EMAIL, NAME, PHONE) if s in text], text
