"""`amends policy ...` and `amends review ...` as an operator runs them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amends.cli import app as cli
from tests.factories import incident
from tests.infra import Infra
from tests.kafka_tools import incident_events, produce

pytestmark = pytest.mark.integration

DEFAULT = Path("deploy/policy/default.yaml")
runner = CliRunner()


def test_validate_names_the_problems(tmp_path: Path) -> None:
    ok = runner.invoke(cli, ["policy", "validate", str(DEFAULT)])
    assert ok.exit_code == 0, ok.output
    assert "valid: policy 2026.12-1 (EUR)" in ok.output
    broken = tmp_path / "broken.yaml"
    broken.write_text(DEFAULT.read_text().replace('daily_budget: "25000.00"',
                                                  "daily_budget: -5"))
    bad = runner.invoke(cli, ["policy", "validate", str(broken)])
    assert bad.exit_code == 1
    assert "guards.daily_budget: Input should be greater than or equal to 0" in bad.output
    line = next(n for n, row in enumerate(DEFAULT.read_text().splitlines(), 1)
                if "daily_budget" in row)
    assert f"line {line}: guards.daily_budget" in bad.output


def test_explain_shows_rules_caps_and_the_paragraph() -> None:
    one = incident("delivery_delayed", delay_minutes=300, tier="gold")
    result = runner.invoke(cli, ["policy", "explain", str(DEFAULT),
                                 "--incident", json.dumps(one)])
    assert result.exit_code == 0, result.output
    assert "delay-2h-to-8h" in result.output
    assert "loyal-tier" in result.output
    assert "We are sorry: your delivery was 300 minutes later than we promised" in result.output


def test_explain_tells_restitution_from_goodwill() -> None:
    charged = incident("double_charge", charged_amount={"amount": "640.00", "currency": "EUR"},
                       order_value={"amount": "640.00", "currency": "EUR"})
    result = runner.invoke(cli, ["policy", "explain", str(DEFAULT),
                                 "--incident", json.dumps(charged)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert ("decision: approved, worth 645.00 EUR (goodwill 5.00 EUR, restitution 640.00 EUR)"
            in result.output)
    assert "refund (restitution)" in result.output


def test_backtest_compares_two_policies_on_generated_incidents(tmp_path: Path) -> None:
    generous = tmp_path / "generous.yaml"
    generous.write_text(DEFAULT.read_text().replace('version: "2026.12-1"',
                                                    'version: "generous"')
                        .replace("- points: 200\n", "- points: 400\n"))
    result = runner.invoke(cli, ["policy", "backtest", str(generous), "--against",
                                 str(DEFAULT), "--generate", "3000"])
    assert result.exit_code == 0, result.output
    assert "backtest of 3,000 incidents" in result.output
    assert "policy generous" in result.output
    assert "policy 2026.12-1" in result.output
    rows = {cells[0]: cells[1:] for line in result.output.splitlines()
            if line.startswith("│")
            for cells in [[cell.strip() for cell in line.strip().strip("│").split("│")]]}
    assert "+" in rows["goodwill"][-1], "doubling some points must cost more goodwill"
    # Restitution is what was taken by mistake: the same under both policies, and some.
    generous_owed, default_owed, change = rows["restitution"]
    assert generous_owed == default_owed != "0.00 EUR"
    assert change == "0.00 EUR"


async def test_backtest_reads_the_incidents_topic(infra: Infra, suffix: str) -> None:
    topic = f"incidents.{suffix}"
    incidents = [incident("service_outage", customer_id=f"{suffix}-{n}", outage_minutes=300,
                          fact=f"outage-{n}") for n in range(40)]
    await produce(infra.kafka_bootstrap, topic, incident_events(incidents))
    result = await asyncio.to_thread(
        runner.invoke, cli, ["policy", "backtest", str(DEFAULT), "--topic", topic],
        env={"AMENDS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap})
    assert result.exit_code == 0, result.output
    assert "backtest of 40 incidents" in result.output
    voucher = next(line for line in result.output.splitlines() if "voucher (count)" in line)
    assert voucher.split("│")[2].strip() == "40"
