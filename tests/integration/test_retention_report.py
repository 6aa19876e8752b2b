"""`amends report retention` on the real database: the aftermath from intake's store joined
with the decisions in decision's store, exported as JSON with the simulated effect in it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from amends import cli_report
from amends.cli import app
from devtools.customers_sim import simulate
from services.common.adapters.mongo import Doc
from services.decision.adapters.storage import open_storage
from services.intake.adapters.ferretdb import FerretAftermaths
from services.intake.aftermath import AftermathView
from tests.infra import Infra

pytestmark = pytest.mark.integration

# Far enough back that every 30-day window has closed, recent enough for `--since-days 180`.
T0 = (datetime.now(UTC) - timedelta(days=100)).replace(microsecond=0)


async def test_the_report_joins_aftermath_and_decisions_and_exports_them(
        infra: Infra, suffix: str, mongo: AsyncMongoClient[Doc], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMENDS_MONGO_URL", infra.mongo_url)
    intake_db, decision_db = f"amends_test_{suffix}_intake", f"amends_test_{suffix}_decision"
    sim = simulate(60, T0, seed=3)
    view = AftermathView((7, 30, 90))
    followed = view.unfollowed(sim.incidents)
    view.follow(followed)
    facts = view.facts(sim.events)
    assert any(x.kind.value == "order" for x in facts)  # else the sums below prove nothing
    store = FerretAftermaths(mongo[intake_db])
    await store.follow(followed)
    await store.add(facts)
    decisions, _, _ = await open_storage(mongo, decision_db)
    await decisions.decisions.add_new([(d.decision_id, d) for d in sim.decisions.values()])

    rows = await cli_report._load(intake_db, decision_db, T0 - timedelta(days=1), (7, 30, 90))
    assert {r.aftermath.followed.incident_id: r.remedy for r in rows} == {
        i: k.value for i, k in sim.remedy.items()}
    assert sum(r.aftermath.window(30).orders for r in rows) == sum(
        1 for x in facts if x.kind.value == "order")

    out = tmp_path / "retention.json"
    # The command runs its own event loop: in a thread, beside the test's.
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["report", "retention", "--intake-db", intake_db,
                                  "--decision-db", decision_db, "--by", "remedy kind",
                                  "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "retention 30 days" in result.output
    exported = json.loads(out.read_text())
    thirty = {f["group"]: f for f in exported if f["days"] == 30}
    assert set(thirty) == {"apology", "points", "voucher"}
    assert sum(f["n"] for f in thirty.values()) == 60
    assert sum(f["reordered"] for f in thirty.values()) == sum(
        r.aftermath.window(30).reordered for r in rows)
