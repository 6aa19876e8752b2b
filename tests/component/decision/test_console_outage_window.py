"""The console's outage page: the window, and an admin's abort through a CSRF-checked form
(refused without the token, for a viewer, and after the window)."""

from __future__ import annotations

from datetime import timedelta

from services.common.access import Role
from tests.component.decision.conftest import T0, Decider, build
from tests.component.decision.test_console import browser, console_of, signed_in
from tests.factories import incident


async def outage(decider: Decider) -> None:
    await decider.decide(*[incident("service_outage", customer_id=f"c-{n}", at=T0,
                                    fact=f"out-1-{n}", outage_id="out-1", order_id=None,
                                    outage_minutes=90) for n in range(2)])


async def test_an_admin_aborts_an_outage_from_its_page() -> None:
    decider = build(fulfilment_url="http://127.0.0.1:1")  # fulfilment does not answer
    console_of(decider)
    await outage(decider)
    async with browser(decider.app) as client:
        csrf = await signed_in(client, Role.admin)
        listed = await client.get("/console/outages")
        page = await client.get("/console/outages/out-1")
        forged = await client.post("/console/outages/out-1/abort",
                                   data={"csrf": "nope", "reason": "x"})
        done = await client.post("/console/outages/out-1/abort",
                                 data={"csrf": csrf, "reason": "wrong customer list"})
        after = await client.get(done.headers["location"])
    assert 'href="/console/outages/out-1"' in listed.text
    assert "open, 600 s left" in page.text
    assert "Abort the remedies" in page.text
    assert "Fulfilment did not say" in page.text
    assert forged.status_code == 403
    assert done.status_code == 303, done.text
    assert "Remedies aborted for 2 decision(s)" in after.text
    assert [e.action for e in decider.audit.of("outage:out-1")] == ["outage_abort"]


async def test_a_viewer_sees_no_buttons_and_late_is_too_late() -> None:
    decider = build(fulfilment_url="http://127.0.0.1:1")
    console_of(decider)
    await outage(decider)
    async with browser(decider.app) as client:
        csrf = await signed_in(client, Role.viewer)
        page = await client.get("/console/outages/out-1")
        refused = await client.post("/console/outages/out-1/abort",
                                    data={"csrf": csrf, "reason": "x"})
    assert "Abort the remedies" not in page.text
    assert refused.status_code == 403
    decider.clock.advance(timedelta(minutes=11))
    async with browser(decider.app) as client:
        csrf = await signed_in(client, Role.admin)
        late = await client.post("/console/outages/out-1/change",
                                 data={"csrf": csrf, "reason": "x", "points": "10"})
    assert late.status_code == 409
    assert "too late" in late.text
