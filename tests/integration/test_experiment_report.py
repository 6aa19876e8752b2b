"""`amends experiment report` and `amends policy backtest --retention` on the real database:
a simulated experiment's decisions in decision's store and their aftermath in intake's,
read back, joined and reported per arm; a new policy's retention estimated from them, and
refused for a remedy the experiment never gave."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from amends.cli import app
from devtools import experiment_sim as sim_
from services.common.adapters.mongo import Doc
from services.decision.adapters.storage import open_storage
from services.intake.adapters.ferretdb import FerretAftermaths
from services.intake.aftermath import AftermathView
from tests.infra import Infra

pytestmark = pytest.mark.integration

# Far enough back that every 30-day window has closed, recent enough for the reports.
T0 = (datetime.now(UTC) - timedelta(days=100)).replace(microsecond=0)


async def test_the_stored_experiment_is_reported_per_arm_and_a_new_policy_estimated(
        infra: Infra, suffix: str, mongo: AsyncMongoClient[Doc], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMENDS_MONGO_URL", infra.mongo_url)
    intake_db, decision_db = f"amends_test_{suffix}_intake", f"amends_test_{suffix}_decision"
    sim = sim_.simulate(800, T0, seed=3)
    view = AftermathView((7, 30, 90))
    store = FerretAftermaths(mongo[intake_db])
    followed = view.unfollowed(sim.incidents)
    await store.follow(followed)
    view.follow(followed)  # the view makes facts only of the incidents it follows
    await store.add(view.facts(sim.events))
    decisions, _, _ = await open_storage(mongo, decision_db)
    await decisions.decisions.add_new([(d.decision_id, d) for d in sim.decisions.values()])

    out = tmp_path / "experiment.json"
    runner = CliRunner()
    # The commands run their own event loops: in a thread, beside the test's.
    result = await asyncio.to_thread(
        runner.invoke, app, ["experiment", "report", "delay-points", "--intake-db", intake_db,
                             "--decision-db", decision_db, "--json", str(out)],
        terminal_width=240)
    assert result.exit_code == 0, result.output
    assert "experiment delay-points: 30 days" in result.output
    rows = {r["arm"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"holdout", "points-300", "points-600"}
    arms = {d.incident.incident_id: d.experiment.arm for d in sim.decisions.values()
            if d.experiment is not None}
    assert {a: rows[a]["n"] for a in rows} == {
        a: sum(1 for x in arms.values() if x == a) for a in rows}
    ordered = {e.subject for e in sim.events}  # every simulated event is a reorder
    assert sum(r["reordered"] for r in rows.values()) == len(ordered)
    assert rows["holdout"]["control"] == "holdout"
    assert rows["points-600"]["cost"] == f"{rows['points-600']['n'] * 6}.00"

    result = await asyncio.to_thread(
        runner.invoke, app, ["experiment", "report", "never-ran", "--intake-db", intake_db,
                             "--decision-db", decision_db], terminal_width=240)
    assert result.exit_code == 1
    assert "no decisions recorded an arm of experiment 'never-ran'" in result.output

    new, vouchers = tmp_path / "by-tier.yaml", tmp_path / "vouchers.yaml"
    new.write_text(sim_.BY_TIER_YAML)
    vouchers.write_text(sim_.VOUCHERS_YAML)
    result = await asyncio.to_thread(
        runner.invoke, app, ["policy", "backtest", str(new), "--against", str(vouchers),
                             "--store", decision_db, "--retention", "--intake-db", intake_db],
        terminal_width=240)
    assert result.exit_code == 0, result.output
    estimated = next(line for line in result.output.splitlines() if "sim-by-tier" in line
                     and "%" in line)
    assert "not told" not in estimated
    assert "800" in estimated
    assert "policy sim-vouchers: no estimate:" in result.output
    assert "voucher 5" in result.output
