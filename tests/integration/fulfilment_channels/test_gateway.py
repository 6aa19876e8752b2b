"""Refunds through `HttpGateway` against the local gateway peer served over real HTTP:
idempotent, followed until settled, retried when the gateway is in trouble, refused when
they ask for more than is left of the payment."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from devtools.gateway_peer import DEFAULT_API_KEY, Behaviour, Peer, create_app, serving
from schemas.common import Money
from services.fulfilment.errors import CredentialsError, PermanentError, TransientError
from services.fulfilment.gateway import (
    HttpGateway,
    LedgerGateway,
    RefundRequest,
    RefundStatus,
    until_settled,
)
from services.fulfilment.retry import retry

pytestmark = pytest.mark.integration

PAID = Money.of("49.90", "EUR")


def request(order_id: str = "o-1", amount: str = "49.90", *, key: str | None = None,
            reason: str = "double_charge") -> RefundRequest:
    return RefundRequest(idempotency_key=key or f"d-{uuid.uuid4().hex}:1", order_id=order_id,
                         payment_ref=f"pay-{order_id}", amount=Money.of(amount, "EUR"),
                         reason=reason)


@contextlib.asynccontextmanager
async def gateway_peer(**behaviour: Any) -> AsyncIterator[tuple[HttpGateway, Peer, str]]:
    """The peer over HTTP on a free port, a gateway client for it, and the peer's state."""
    app = create_app(Behaviour(**{"payments": {"o-1": PAID}, **behaviour}))
    async with serving(app) as base_url, HttpGateway(base_url, DEFAULT_API_KEY,
                                                     timeout_s=5) as gateway:
        yield gateway, app.state.peer, base_url


async def refunds_at_peer(base_url: str, order_id: str) -> list[dict[str, Any]]:
    """What the peer says it refunded (another client, over HTTP)."""
    async with httpx.AsyncClient(base_url=base_url, headers={
            "Authorization": f"Bearer {DEFAULT_API_KEY}"}) as client:
        response = await client.get("/v1/refunds", params={"order_id": order_id})
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        return data


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_the_same_key_twice_is_one_refund() -> None:
    async with gateway_peer(settle_after_polls=0) as (gateway, peer, base_url):
        asked = request()
        first = await gateway.refund(asked)
        again = await gateway.refund(asked)
        assert first == again
        assert first.status is RefundStatus.succeeded
        [refund] = await refunds_at_peer(base_url, "o-1")
        assert refund["id"] == first.gateway_id
        assert refund["amount"] == {"amount": "49.90", "currency": "EUR"}
        assert len(peer.refunds) == 1


async def test_racing_requests_with_one_key_make_one_refund() -> None:
    async with gateway_peer(payments={"o-2": Money.of("30.00", "EUR")}) as (gateway, peer, _):
        asked = request("o-2", "30.00")
        results = await asyncio.gather(*(gateway.refund(asked) for _ in range(8)))
        assert len({r.gateway_id for r in results}) == 1
        assert len(peer.refunds) == 1


async def test_the_same_key_with_another_body_is_a_conflict() -> None:
    async with gateway_peer() as (gateway, peer, _):
        await gateway.refund(request("o-1", "10.00", key="k-1"))
        with pytest.raises(PermanentError) as conflict:
            await gateway.refund(request("o-1", "12.00", key="k-1"))
        assert conflict.value.status == 409
        assert conflict.value.code == "idempotency_key_in_use"
        assert len(peer.refunds) == 1


async def test_a_pending_refund_is_followed_until_it_succeeds() -> None:
    async with gateway_peer(settle_after_polls=2) as (gateway, _, base_url):
        started = await gateway.refund(request())
        assert started.status is RefundStatus.pending
        sleeps = Sleeps()
        settled = await until_settled(gateway, started, polls=5, interval_s=0.5, sleep=sleeps)
        assert settled.status is RefundStatus.succeeded
        assert settled.gateway_id == started.gateway_id
        assert sleeps.waits == [0.5, 0.5]  # pending on the first query, done on the second
        [refund] = await refunds_at_peer(base_url, "o-1")
        assert refund["status"] == "succeeded"


async def test_a_refund_can_fail_at_the_gateway() -> None:
    async with gateway_peer(settle_after_polls=1, failing_orders=frozenset({"o-1"})) as (
            gateway, _, _):
        started = await gateway.refund(request())
        done = await until_settled(gateway, started, polls=3, interval_s=0, sleep=Sleeps())
        assert done.status is RefundStatus.failed
        assert "declined" in done.detail


async def test_a_gateway_in_trouble_is_retried_until_it_answers() -> None:
    async with gateway_peer(transient_failures=2, settle_after_polls=0) as (
            gateway, peer, base_url):
        sleeps = Sleeps()
        retried: list[int] = []
        asked = request()
        done = await retry(lambda: gateway.refund(asked), attempts=4, base_s=0.2, cap_s=2,
                           sleep=sleeps, rng=random.Random(7),
                           on_retry=lambda _attempt, error, _delay: retried.append(
                               error.status or 0))
        assert done.status is RefundStatus.succeeded
        assert retried == [503, 503]
        assert peer.refund_calls == 3
        assert len(await refunds_at_peer(base_url, "o-1")) == 1


async def test_retries_run_out_with_the_last_transient_error() -> None:
    async with gateway_peer(transient_failures=10) as (gateway, peer, _):
        asked = request()
        with pytest.raises(TransientError) as busy:
            await retry(lambda: gateway.refund(asked), attempts=3, base_s=0.1, cap_s=1,
                        sleep=Sleeps(), rng=random.Random(7))
        assert busy.value.status == 503
        assert peer.refund_calls == 3
        assert peer.refunds == {}


async def test_a_permanent_refusal_is_not_retried_and_refunds_nothing() -> None:
    async with gateway_peer() as (gateway, peer, base_url):
        sleeps = Sleeps()
        with pytest.raises(PermanentError) as unknown:
            await retry(lambda: gateway.refund(request("o-unknown", "5.00")), attempts=4,
                        base_s=0.1, cap_s=1, sleep=sleeps, rng=random.Random(7))
        assert unknown.value.status == 404
        assert "o-unknown" in str(unknown.value)  # the gateway's own message
        assert sleeps.waits == []
        assert peer.refund_calls == 1
        assert peer.refunds == {}
        assert await refunds_at_peer(base_url, "o-unknown") == []

        async with HttpGateway(base_url, "sk_wrong") as stranger:
            with pytest.raises(CredentialsError) as unauthorised:
                await stranger.refund(request())
        assert unauthorised.value.status == 401
        assert peer.refunds == {}


async def test_a_refund_above_what_is_left_is_refused() -> None:
    async with gateway_peer(settle_after_polls=0) as (gateway, _, base_url):
        await gateway.refund(request("o-1", "30.00"))
        with pytest.raises(PermanentError) as refused:
            await gateway.refund(request("o-1", "30.00"))
        assert refused.value.status == 400
        assert refused.value.code == "amount_too_large"
        assert "19.90" in str(refused.value)
        assert (await gateway.refund(request("o-1", "19.90"))).status is RefundStatus.succeeded
        refunded = await refunds_at_peer(base_url, "o-1")
        assert sum(Decimal(r["amount"]["amount"]) for r in refunded) == PAID.amount
        with pytest.raises(PermanentError, match="amount_too_large"):
            await gateway.refund(request("o-1", "0.01"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_gateway_is_transient() -> None:
    async with HttpGateway(f"http://127.0.0.1:{free_port()}", DEFAULT_API_KEY) as gateway:
        with pytest.raises(TransientError, match="cannot reach"):
            await gateway.refund(request())


async def test_the_ledger_gateway_succeeds_at_once_with_an_id_from_the_key() -> None:
    ledger = LedgerGateway()
    first = await ledger.refund(request(key="d-9:1"))
    assert first.status is RefundStatus.succeeded
    assert first == await ledger.refund(request(key="d-9:1"))
    assert first.gateway_id != (await ledger.refund(request(key="d-9:2"))).gateway_id
    assert (await ledger.refund_status(first.gateway_id)).status is RefundStatus.succeeded
    with pytest.raises(PermanentError):
        await ledger.refund(request(amount="0"))


@pytest.fixture
def peer_process() -> Iterator[str]:
    """`python -m devtools.gateway_peer` as a process of its own, stopped by its pid."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.gateway_peer", "--port", str(port),
         "--payment", "o-7=20.00:EUR", "--settle-after-polls", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                httpx.get(f"{base_url}/v1/payments/o-7", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the peer did not start within 15 s"
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_peer_runs_as_a_command(peer_process: str) -> None:
    async with HttpGateway(peer_process, DEFAULT_API_KEY) as gateway:
        done = await gateway.refund(request("o-7", "20.00"))
        assert done.status is RefundStatus.succeeded
        with pytest.raises(PermanentError, match="amount_too_large"):
            await gateway.refund(request("o-7", "0.01"))
