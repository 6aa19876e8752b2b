"""A simulated policy experiment with a planted effect: customers whose chance of ordering
again depends on their tier and on the points they got. The experiment report must recover
each arm's rate and the difference to the holdout, and a counterfactual backtest of a new
policy (points by tier, which no arm gave) the rate that policy would have had.

Seeded and deterministic. The incidents are decided by the real engine under `POLICY`, so
the arms and their logged probabilities are the ones production would record; the later
orders are upstream events, folded by intake's aftermath view into outcome records.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from amends.experiment_report import ExperimentReport

from schemas.common import CustomerSnapshot, Money, Tier, deterministic_id
from schemas.decision import Decision
from schemas.incident import Detection, Incident, IncidentType, incident_id
from schemas.upstream import OrderPlaced, OrderPlacedEvent, UpstreamEvent
from services.decision.backtest.counterfactual import action_of
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import Policy, parse_policy
from services.intake.aftermath import AftermathView
from services.intake.domain.aftermath import Aftermath

_HEAD = """
currency: EUR
values: {point: "0.01"}
guards: {incident_cap: "100.00", customer_cap: "200.00", daily_budget: "100000.00"}
"""
# The experiment: 300 or 600 points for a two-hour delay, a tenth held out with an apology.
POLICY_YAML = f"""
version: sim-experiment
{_HEAD}
rules:
  - id: delay-2h
    when: {{type: [delivery_delayed], delay_minutes: {{gte: 60}}}}
    grant: [{{points: 300}}]
experiment:
  id: delay-points
  rule: delay-2h
  variants:
    - {{id: points-300, share: 0.45, grant: [{{points: 300}}]}}
    - {{id: points-600, share: 0.45, grant: [{{points: 600}}]}}
  holdout: {{share: 0.10, gets: apology}}
"""
POLICY = parse_policy(POLICY_YAML, "experiment_sim")
# A policy no arm ran: 600 points for standard customers, 300 for gold ones.
BY_TIER_YAML = f"""
version: sim-by-tier
{_HEAD}
rules:
  - id: delay-2h-gold
    group: delay
    when: {{type: [delivery_delayed], delay_minutes: {{gte: 60}}, tier: [gold]}}
    grant: [{{points: 300}}]
  - id: delay-2h
    group: delay
    when: {{type: [delivery_delayed], delay_minutes: {{gte: 60}}}}
    grant: [{{points: 600}}]
"""
BY_TIER = parse_policy(BY_TIER_YAML, "experiment_sim")
# A policy whose remedy the experiment never gave: its retention cannot be told.
VOUCHERS_YAML = f"""
version: sim-vouchers
{_HEAD}
rules:
  - id: delay-2h
    when: {{type: [delivery_delayed], delay_minutes: {{gte: 60}}}}
    grant: [{{voucher: {{amount: 5}}}}]
"""
VOUCHERS = parse_policy(VOUCHERS_YAML, "experiment_sim")

# The planted effect: the chance of an order within 30 days, by tier and action granted.
PLANTED: dict[tuple[str, str], float] = {
    ("standard", "apology"): 0.25, ("standard", "points 3"): 0.35,
    ("standard", "points 6"): 0.45,
    ("gold", "apology"): 0.40, ("gold", "points 3"): 0.55, ("gold", "points 6"): 0.58,
}
DAYS = 30


@dataclass
class ExperimentSim:
    incidents: list[Incident] = field(default_factory=list)
    decisions: dict[str, Decision] = field(default_factory=dict)  # by incident id
    events: list[UpstreamEvent] = field(default_factory=list)  # in time order
    chance: dict[str, float] = field(default_factory=dict)  # planted, by incident id

    def aftermaths(self, windows: Sequence[int] = (7, DAYS, 90)) -> list[Aftermath]:
        """The outcome records intake keeps, fed the events in consumer-sized batches."""
        view = AftermathView(windows)
        view.follow(view.unfollowed(self.incidents))
        for start in range(0, len(self.events), 500):
            view.keep(view.facts(self.events[start:start + 500]))
        return view.records()


def planted(incident: Incident, action: str) -> float:
    """The simulated truth: the chance this customer orders again after `action`."""
    return PLANTED[(incident.customer.tier.value, action)]


def simulate(customers: int, start: datetime, *, seed: int = 20,
             policy: Policy = POLICY) -> ExperimentSim:
    rng = random.Random(seed)
    out = ExperimentSim()
    for n in range(customers):
        customer = CustomerSnapshot(id=f"exp-{seed}-{n:06d}",
                                    tier=rng.choice((Tier.standard, Tier.gold)),
                                    locale=rng.choice(("en", "ro")))
        occurred = start + timedelta(minutes=n)
        order = f"exp-order-{seed}-{n:06d}"
        incident = Incident(
            incident_id=incident_id(IncidentType.delivery_delayed, order, "late_2h"),
            type=IncidentType.delivery_delayed, detection=Detection.proactive,
            customer=customer, occurred_at=occurred, detected_at=occurred + timedelta(minutes=5),
            source="sim", order_id=order, order_value=Money(amount=Decimal(40), currency="EUR"),
            delay_minutes=130, delay_band="late_2h")
        decision = decide(incident, CustomerHistory(), policy, incident.detected_at)
        chance = planted(incident, action_of(decision))
        out.incidents.append(incident)
        out.decisions[incident.incident_id] = decision
        out.chance[incident.incident_id] = chance
        if rng.random() < chance:
            at = occurred + timedelta(seconds=rng.randrange(60, DAYS * 86400))
            out.events.append(OrderPlacedEvent(
                id=deterministic_id("exp", "order", customer.id), source="sim",
                type="order.placed", time=at, subject=customer.id,
                data=OrderPlaced(order_id=f"{order}-again", customer=customer, placed_at=at,
                                 total=Money(amount=Decimal(rng.randrange(1000, 9000)) / 100,
                                             currency="EUR"))))
    out.events.sort(key=lambda e: (e.time, e.id))
    return out


def truth(incidents: Sequence[Incident], actions: Sequence[str]) -> float:
    """The reorder rate a policy taking `actions` would have had: the mean planted chance."""
    return sum(planted(i, a) for i, a in zip(incidents, actions, strict=True)) / len(incidents)


def simulated_report(customers: int = 3000, seed: int = 20) -> ExperimentReport:
    """`amends experiment report delay-points` over a simulated experiment: the engine's own
    arms for `customers` late deliveries, their later orders planted by arm."""
    from amends import experiment_report as er  # noqa: PLC0415 - the CLI's module

    start = datetime(2026, 6, 1, tzinfo=UTC)
    sim = simulate(customers, start, seed=seed)
    found = er.members("delay-points", sim.aftermaths(), sim.decisions)
    return er.report("delay-points", found, DAYS, start + timedelta(days=365))


def run_experiment_sim(
    customers: Annotated[int, typer.Option(help="simulated customers, one incident each")] = 6000,
    seed: Annotated[int, typer.Option(help="the simulation's seed")] = 20,
) -> None:
    """A simulated experiment (300 vs 600 points, a holdout): the planted effect beside the
    experiment report, and the counterfactual estimates of two new policies beside the truth."""
    from amends import experiment_report as er  # noqa: PLC0415 - the CLI's module
    from services.decision.backtest.counterfactual import (  # noqa: PLC0415
        Logged,
        chosen_actions,
        estimate,
    )

    console = Console(width=None if Console().is_terminal else 140)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    with console.status("simulating customers and deciding their incidents"):
        sim = simulate(customers, start, seed=seed)
        aftermaths = sim.aftermaths()
    found = er.members("delay-points", aftermaths, sim.decisions)
    made = er.report("delay-points", found, DAYS, start + timedelta(days=365))
    table = Table(title=f"experiment delay-points: planted vs recovered, {DAYS} days "
                  f"({customers:,} customers, seed {seed})", title_justify="left")
    for name in ("arm", "n", "planted", "reordered [95%]", "inside", "vs holdout [95%]",
                 "planted difference", "p (Holm)"):
        table.add_column(name, justify="left" if name == "arm" else "right")
    arm_truth = {a.arm: sum(sim.chance[m.decision.incident.incident_id] for m in found
                            if m.arm == a.arm) / a.n for a in made.arms}
    for a in made.arms:
        ci = a.reorder_ci
        c = next((c for c in made.comparisons if c.arm == a.arm), None)
        table.add_row(a.arm, f"{a.n:,}", f"{arm_truth[a.arm]:.1%}",
                      f"{a.reorder_rate:.1%} [{ci.low:.1%}, {ci.high:.1%}]",
                      "yes" if ci.low <= arm_truth[a.arm] <= ci.high else "NO",
                      f"{c.difference:+.1%} [{c.ci.low:+.1%}, {c.ci.high:+.1%}]" if c else "-",
                      f"{arm_truth[a.arm] - arm_truth[made.control or a.arm]:+.1%}" if c else "-",
                      f"{c.p_holm:.2g}" if c else "-")
    console.print(table)
    logged = [Logged.of(sim.decisions[a.followed.incident_id], a.window(DAYS).reordered)
              for a in sorted(aftermaths, key=lambda a: a.followed.detected_at)]
    incidents = [r.incident for r in logged]
    estimates = Table(title="counterfactual: the reorder rate of policies no arm ran",
                      title_justify="left")
    for name in ("policy", "truth", "SNIPS [95%]", "doubly robust [95%]", "matched", "ESS"):
        estimates.add_column(name, justify="left" if name == "policy" else "right")
    for policy in (BY_TIER, VOUCHERS):
        chosen = chosen_actions(incidents, policy)
        result = estimate(logged, chosen)
        told = [f"{e.value:.1%} [{e.low:.1%}, {e.high:.1%}]" if e else "refused"
                for e in (result.snips, result.dr)]
        estimates.add_row(policy.version, f"{truth(incidents, chosen):.1%}"
                          if all((i.customer.tier.value, a) in PLANTED
                                 for i, a in zip(incidents, chosen, strict=True)) else "?",
                          *told, f"{result.matched:,}", f"{result.ess:,.0f}")
        for reason in result.refused:
            console.print(f"{policy.version}: not told: {reason}", highlight=False)
    console.print(estimates)
