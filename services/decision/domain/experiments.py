"""Policy experiments: which arm of the policy's experiment a customer is in, and the policy
as that arm applies it. Pure: the arm is a hash of the experiment's id and the customer's, so
a customer stays in their arm in every decision, a replay assigns the same arms, and another
experiment shuffles customers anew. No randomness and no clock: whether the experiment is
still running is judged at the decision's own time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from hashlib import sha256

from schemas.decision import Assignment
from services.decision.domain.policy import HOLDOUT, Experiment, Policy, Rule

SPAN = 1 << 64  # the hash values: a customer's place in [0, 1) is its value / SPAN


def place(experiment_id: str, customer_id: str) -> int:
    """The customer's place among `SPAN` values for the experiment (uniform, and unrelated
    between experiments)."""
    digest = sha256(f"experiment\x1f{experiment_id}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm: the customers whose place is below `below` (and not below an earlier arm's)."""

    id: str
    share: Decimal
    below: int
    rule: Rule  # the varied rule as this arm grants it
    assignment: Assignment  # as decisions record it


def arms(experiment: Experiment, rule: Rule) -> tuple[Arm, ...]:
    """The arms of `experiment` (which varies `rule`): the variants in file order, then the
    holdout. Their bounds are exact (the shares add up to 1), so the last one is `SPAN`."""
    made, reached = [], Fraction(0)
    shares = [(v.id, v.share, rule.model_copy(update={"grant": v.grant}))
              for v in experiment.variants]
    holdout = experiment.holdout
    if holdout is not None:
        kept = rule if holdout.gets == "rule" else rule.model_copy(
            update={"grant": [], "offer": None})
        shares.append((HOLDOUT, holdout.share, kept))
    for arm_id, share, varied in shares:
        reached += Fraction(share)
        made.append(Arm(arm_id, share, int(reached * SPAN), varied, Assignment(
            id=experiment.id, rule_id=rule.id, arm=arm_id, probability=share)))
    return tuple(made)


def pick(choices: tuple[Arm, ...], experiment_id: str, customer_id: str) -> Arm:
    """The arm the customer is in."""
    at = place(experiment_id, customer_id)
    for arm in choices:
        if at < arm.below:
            return arm
    raise AssertionError("the shares add up to 1: the last arm ends at SPAN")  # pragma: no cover


def as_applied(policy: Policy, arm: Arm) -> Policy:
    """`policy` with the varied rule as `arm` grants it (and no experiment left to run)."""
    rules = [arm.rule if rule.id == arm.rule.id else rule for rule in policy.rules]
    return policy.model_copy(update={"rules": rules, "experiment": None})


def assigned(policy: Policy, customer_id: str, now: datetime) -> Arm | None:
    """The arm of the policy's experiment the customer is in at `now`, if one is running."""
    experiment = policy.experiment
    if experiment is None or not experiment.running(now):
        return None
    rule = next(r for r in policy.rules if r.id == experiment.rule)
    return pick(arms(experiment, rule), experiment.id, customer_id)


def percent(share: Decimal) -> str:
    """A share in percent, without trailing zeros (0.45: "45", 0.125: "12.5")."""
    shown = f"{share * 100:f}"
    return shown.rstrip("0").rstrip(".") if "." in shown else shown


def arm_words(assignment: Assignment, policy: Policy) -> str:
    """The explanation's sentence about the arm that applied."""
    share = percent(assignment.probability)
    experiment = policy.experiment
    if assignment.arm != HOLDOUT:
        return (f" Experiment {assignment.id}: rule {assignment.rule_id} granted what its "
                f"variant {assignment.arm} grants ({share}% of customers).")
    nothing = experiment is not None and experiment.holdout is not None \
        and experiment.holdout.gets == "apology"
    return (f" Experiment {assignment.id}: this customer is in its holdout ({share}% of "
            f"customers), so rule {assignment.rule_id} granted "
            + ("nothing beyond the apology." if nothing else "its own remedies."))
