"""`amends policy validate|explain|backtest` on a policy with an experiment: its shares, the
arm an incident's customer is in, and what each arm cost (no broker, no database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from amends.cli import app as cli
from services.decision.domain.policy import parse_policy
from tests.factories import incident
from tests.golden import policies
from tests.unit.decision.test_experiments import customer_in

pytestmark = pytest.mark.unit

runner = CliRunner()


@pytest.fixture
def tried(tmp_path: Path) -> Path:
    """The golden policy with an experiment, as a file."""
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(policies()["experiment"].model_dump(mode="json"),
                                   sort_keys=False))
    return path


def test_validate_shows_the_experiment_and_its_shares(tried: Path) -> None:
    result = runner.invoke(cli, ["policy", "validate", str(tried)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert ("experiment delay-points on rule delay-30min-to-2h (running): points-300 45%, "
            "points-600 45%, holdout 10%") in result.output


@pytest.mark.parametrize("arm", ["points-600", "holdout"])
def test_explain_shows_the_arm_of_the_customer(tried: Path, arm: str) -> None:
    customer = customer_in(arm, policies()["experiment"])
    one = incident("delivery_delayed", delay_minutes=95, customer_id=customer)
    result = runner.invoke(cli, ["policy", "explain", str(tried), "--incident", json.dumps(one)],
                           terminal_width=240)
    assert result.exit_code == 0, result.output
    probability = "0.10" if arm == "holdout" else "0.45"
    assert (f"experiment delay-points: arm {arm} (probability {probability}) for rule "
            f"delay-30min-to-2h, sticky for customer {customer}") in result.output


def test_explain_says_when_the_experiment_did_not_apply(tried: Path) -> None:
    one = incident("delivery_delayed", delay_minutes=300)
    result = runner.invoke(cli, ["policy", "explain", str(tried), "--incident", json.dumps(one)],
                           terminal_width=240)
    assert result.exit_code == 0, result.output
    assert "experiment delay-points: not applied" in result.output


def test_backtest_tallies_each_arm(tried: Path) -> None:
    result = runner.invoke(cli, ["policy", "backtest", str(tried), "--generate", "3000"],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = {cells[0]: cells[1:] for line in result.output.splitlines()
            if line.startswith("│")
            for cells in [[cell.strip() for cell in line.strip().strip("│").split("│")]]}
    assert {"points-300", "points-600", "holdout"} <= set(rows)
    counts = {arm: int(rows[arm][0].replace(",", "")) for arm in ("points-300", "points-600",
                                                                   "holdout")}
    assert counts["holdout"] < counts["points-300"]
    assert all(n > 0 for n in counts.values())


def test_the_default_policys_example_experiment_is_valid_once_uncommented() -> None:
    lines = Path("deploy/policy/default.yaml").read_text().splitlines()
    start = lines.index("# experiment:")
    text = "\n".join(lines[:start] + [line.removeprefix("# ") for line in lines[start:]])
    policy = parse_policy(text)
    assert policy.experiment is not None
    assert policy.experiment.rule == "delay-30min-to-2h"
