"""The report side of retention and fairness on the real database and broker: the console's
Retention page reading intake's aftermath and decision's decisions from FerretDB/MongoDB,
and `amends report fairness` finding a planted unfairness among stored decisions and
publishing it as events."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from amends.cli import app
from devtools.customers_sim import simulate
from schemas.decision import Decision
from services.common.access import Authenticator, Role
from services.common.adapters.mongo import Doc
from services.decision.adapters.storage import open_storage
from services.decision.console import create_console
from services.decision.console_retention import retention_router, store_rows
from services.decision.settings import DecisionSettings
from services.intake.adapters.ferretdb import FerretAftermaths
from services.intake.aftermath import AftermathView
from tests.component.decision.conftest import build
from tests.component.decision.test_console import browser, signed_in
from tests.infra import Infra
from tests.kafka_tools import collect
from tests.unit.decision.test_fairness import _population

pytestmark = pytest.mark.integration

# Far enough back that every 30-day window has closed, within the page's 180 days.
T0 = (datetime.now(UTC) - timedelta(days=100)).replace(microsecond=0)


async def _store_decisions(mongo: AsyncMongoClient[Doc], db: str,
                           decisions: list[Decision]) -> None:
    store, _, _ = await open_storage(mongo, db)
    await store.decisions.add_new([(d.decision_id, d) for d in decisions])


async def test_the_retention_page_renders_the_stored_aftermath(
        infra: Infra, suffix: str, mongo: AsyncMongoClient[Doc]) -> None:
    intake_db, decision_db = f"amends_test_{suffix}_intake", f"amends_test_{suffix}_decision"
    sim = simulate(90, T0, seed=4)
    view = AftermathView((7, 30, 90))
    followed = view.unfollowed(sim.incidents)
    view.follow(followed)
    facts = view.facts(sim.events)
    assert facts
    aftermaths = FerretAftermaths(mongo[intake_db])
    await aftermaths.follow(followed)
    await aftermaths.add(facts)
    await _store_decisions(mongo, decision_db, list(sim.decisions.values()))

    decider = build()
    decider.clock.now = datetime.now(UTC)
    settings = DecisionSettings(mongo_url=infra.mongo_url, mongo_db=decision_db,
                                retention_intake_db=intake_db)
    console, routes, _ = create_console(decider.service, Authenticator(decider.settings.auth),
                                        decider.settings, CollectorRegistry(),
                                        brand=decider.settings.brand)
    decider.app.include_router(routes)
    decider.app.include_router(retention_router(console, store_rows(settings), settings))
    async with browser(decider.app) as client:
        await signed_in(client, Role.viewer)
        page = await client.get("/console/retention")
    assert page.status_code == 200, page.text
    assert re.search(r'<th scope="row">all</th><td class="num">90</td>', page.text)
    incident_of = {i.customer.id: i.incident_id for i in sim.incidents}
    reordered = {kind: sum(1 for e in sim.events if e.type == "order.placed"
                           and sim.remedy[incident_of[e.subject or ""]].value == kind)
                 for kind in ("apology", "points", "voucher")}
    for kind, count in reordered.items():
        share = f"{count / 30:.1%}"
        assert re.search(rf"<td>{kind}</td><td class=\"num\">30</td><td class=\"num\">"
                         rf"{re.escape(share)} \[", page.text), kind
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page.text


async def test_the_fairness_report_finds_the_planted_unfairness_and_publishes_it(
        infra: Infra, suffix: str, mongo: AsyncMongoClient[Doc], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    decision_db, topic = f"amends_test_{suffix}_decision", f"amends.findings.{suffix}"
    recent = datetime.now(UTC) - timedelta(days=2)
    decisions = [d.model_copy(update={"decided_at": recent})
                 for d in _population(Decimal("0.5"))]
    await _store_decisions(mongo, decision_db, decisions)
    monkeypatch.setenv("AMENDS_MONGO_URL", infra.mongo_url)
    monkeypatch.setenv("AMENDS_KAFKA_BOOTSTRAP", infra.kafka_bootstrap)
    monkeypatch.setenv("AMENDS_DECISION_FINDINGS_TOPIC", topic)
    out = tmp_path / "fairness.json"
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["report", "fairness", "--decision-db", decision_db,
                                  "--json", str(out), "--publish"])
    assert result.exit_code == 0, result.output
    assert "300 decisions compared" in result.output
    exported = json.loads(out.read_text())
    ro = next(r for r in exported if (r["dimension"], r["group"]) == ("locale", "ro"))
    assert ro["flagged"] is True
    assert ro["n"] == 100
    flagged = [r for r in exported if r["flagged"]]
    events = await collect(infra.kafka_bootstrap, topic,
                           lambda seen: len(seen) >= len(flagged), timeout_s=30)
    assert len(events) == len(flagged)
    assert {(e["data"]["dimension"], e["data"]["group"]) for e in events} == {
        (r["dimension"], r["group"]) for r in flagged}
    assert all(e["type"] == "amends.fairness.flagged" for e in events)
