"""Ending an experiment: `stopped` and `promoted` write the policy's next version, validated;
decided under it, every customer gets the rule's own (stopped) or the winner's (promoted)
remedies and no arm is recorded; `amends experiment stop|promote` write it to a new file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amends.cli import app as cli
from schemas.decision import Decision, RemedyKind
from schemas.incident import Incident
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import Policy, PolicyError, parse_policy
from services.decision.domain.promotion import promoted, stopped
from tests.factories import incident
from tests.unit.decision.test_experiments import customer_in

pytestmark = pytest.mark.unit

DEFAULT = Path("deploy/policy/default.yaml").read_text(encoding="utf-8")


def running(gets: str = "apology") -> str:
    """The default policy with the experiment its file suggests (300 or 600 points instead
    of 200 for a 30-minute-to-2-hour delay), the holdout getting `gets`."""
    return DEFAULT + f"""
experiment:
  id: delay-points
  rule: delay-30min-to-2h
  variants:
    - {{id: points-300, share: 0.45, grant: [{{points: 300}}]}}
    - {{id: points-600, share: 0.45, grant: [{{points: 600}}]}}
  holdout: {{share: 0.10, gets: {gets}}}
"""


RUNNING = parse_policy(running())
AT = datetime(2026, 12, 7, 12, tzinfo=UTC)


def _decided(policy: Policy, arm: str, at: datetime = AT) -> Decision:
    customer = customer_in(arm, RUNNING)
    one = Incident.model_validate(incident("delivery_delayed", delay_minutes=95,
                                           customer_id=customer, at=at))
    return decide(one, CustomerHistory(), policy, at)


def _points(decision: Decision) -> int:
    return sum(a.points or 0 for a in decision.actions if a.kind is RemedyKind.points)


def test_the_running_policy_gives_each_arm_its_remedies() -> None:
    # The baseline the versions below change: without it their tests could pass vacuously.
    assert [_points(_decided(RUNNING, arm)) for arm in ("points-300", "points-600",
                                                          "holdout")] == [300, 600, 0]


@pytest.mark.parametrize("arm", ["points-300", "points-600", "holdout"])
def test_a_promoted_variant_is_what_every_customer_gets(arm: str) -> None:
    text, policy = promoted(running(), "delay-points", "points-600", "2026.12-2")
    assert policy.version == "2026.12-2"
    assert policy.experiment is None
    assert "\nexperiment:" not in text
    assert text.startswith("# version 2026.12-2: version 2026.12-1 with arm points-600 of "
                           "experiment delay-points promoted to rule delay-30min-to-2h\n")
    decision = _decided(policy, arm)
    assert _points(decision) == 600
    assert decision.experiment is None
    assert parse_policy(text) == policy  # the file is the policy


def test_a_promoted_holdout_that_got_the_apology_grants_nothing_from_the_rule() -> None:
    _, policy = promoted(running(), "delay-points", "holdout", "2026.12-2")
    rule = next(r for r in policy.rules if r.id == "delay-30min-to-2h")
    assert rule.grant == []
    assert rule.offer is None
    assert _points(_decided(policy, "points-600")) == 0


def test_a_promoted_holdout_that_got_the_rule_keeps_the_rule() -> None:
    _, policy = promoted(running("rule"), "delay-points", "holdout", "2026.12-2")
    before = next(r for r in RUNNING.rules if r.id == "delay-30min-to-2h")
    after = next(r for r in policy.rules if r.id == "delay-30min-to-2h")
    assert after == before
    assert _points(_decided(policy, "points-600")) == 200


def test_everything_else_is_unchanged_and_amounts_stay_exact() -> None:
    _, policy = promoted(running(), "delay-points", "points-300", "2026.12-2")
    varied = "delay-30min-to-2h"
    assert [r for r in policy.rules if r.id != varied] == [
        r for r in RUNNING.rules if r.id != varied]
    assert policy.values == RUNNING.values
    assert policy.guards == RUNNING.guards


@pytest.mark.parametrize(("text", "experiment", "arm", "version", "problem"), [
    (running(), "delay-points", "points-900", "v2",
     "experiment delay-points has no arm 'points-900' (arms: points-300, points-600, holdout)"),
    (running(), "other", "points-600", "v2",
     "the policy's experiment is 'delay-points', not 'other'"),
    (running(), "delay-points", "points-600", "2026.12-1",
     "the new version must differ from '2026.12-1'"),
    (DEFAULT, "delay-points", "points-600", "v2", "the policy runs no experiment"),
])
def test_what_cannot_be_promoted_is_refused(text: str, experiment: str, arm: str,
                                            version: str, problem: str) -> None:
    with pytest.raises(PolicyError) as caught:
        promoted(text, experiment, arm, version)
    assert caught.value.problems == [problem]


def test_a_stopped_experiment_gives_everyone_the_rules_own_remedies() -> None:
    text, policy = stopped(running(), "delay-points", "2026.12-2")
    assert policy.experiment is not None
    assert policy.experiment.stopped
    for arm in ("points-600", "holdout"):
        decision = _decided(policy, arm)
        assert _points(decision) == 200
        assert decision.experiment is None
    assert "stopped" in text.splitlines()[0]


def test_stopped_from_a_time_assigns_before_it_and_not_after() -> None:
    until = AT + timedelta(days=1)
    _, policy = stopped(running(), "delay-points", "2026.12-2", until=until)
    before = _decided(policy, "points-600", AT)
    after = _decided(policy, "points-600", until + timedelta(minutes=1))
    assert before.experiment is not None
    assert _points(before) == 600
    assert after.experiment is None
    assert _points(after) == 200


runner = CliRunner()


def test_the_commands_write_a_new_valid_version_to_a_new_file(tmp_path: Path) -> None:
    source = tmp_path / "policy.yaml"
    source.write_text(running())
    out = tmp_path / "promoted.yaml"
    result = runner.invoke(cli, ["experiment", "promote", "delay-points", "points-600",
                                 "--policy", str(source), "--version", "2026.12-2",
                                 "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "rule delay-30min-to-2h grants what arm" in result.output
    assert parse_policy(out.read_text()).experiment is None
    stopped_out = tmp_path / "stopped.yaml"
    result = runner.invoke(cli, ["experiment", "stop", "delay-points", "--policy", str(source),
                                 "--version", "2026.12-3", "--out", str(stopped_out),
                                 "--at", "2027-01-01T00:00:00+00:00"], terminal_width=200)
    assert result.exit_code == 0, result.output
    experiment = parse_policy(stopped_out.read_text()).experiment
    assert experiment is not None
    assert experiment.until == datetime(2027, 1, 1, tzinfo=UTC)


def test_the_commands_refuse_to_overwrite_the_running_version_or_a_bad_arm(
        tmp_path: Path) -> None:
    source = tmp_path / "policy.yaml"
    source.write_text(running())
    result = runner.invoke(cli, ["experiment", "promote", "delay-points", "points-600",
                                 "--policy", str(source), "--version", "2026.12-2",
                                 "--out", str(source)], terminal_width=200)
    assert result.exit_code != 0
    assert source.read_text() == running()
    result = runner.invoke(cli, ["experiment", "promote", "delay-points", "nope",
                                 "--policy", str(source), "--version", "2026.12-2",
                                 "--out", str(tmp_path / "x.yaml")], terminal_width=200)
    assert result.exit_code == 1
    assert "has no arm 'nope'" in result.output
    assert not (tmp_path / "x.yaml").exists()
