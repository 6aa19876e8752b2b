"""Counterfactual backtests (ADR 0018): what share of customers a NEW policy would have kept,
estimated from recorded decisions, their outcomes and the logged chance of each past
experiment's assignment. Pure: no I/O, no clock, seeded resampling.

An action is what a decision granted beyond the apology, as a canonical text ("points 6",
its money equivalent; "apology" when nothing else). For each recorded decision the new
policy's action is decided as the service would (the fast engine, in time order, with the
customers' histories and the daily budget). Two estimators of its reorder rate:

- **self-normalised inverse propensity (SNIPS):** the outcomes of the decisions whose logged
  action is the one the new policy picks, each weighted by 1 / the logged probability of it
  (the shares of the experiment's arms seen giving it; 1 outside experiments), divided by
  the sum of the weights;
- **doubly robust (DR):** a reward model (the mean outcome of each action per incident type
  and customer tier, from the same history) predicts every incident under the new action,
  and the weighted residuals of the matching decisions correct the model's bias.

Both carry a percentile bootstrap interval (the reward model held fixed). Neither is given
when the history does not cover the new policy: too few matching decisions, an effective
sample size (of the weights) too small, or too many incidents whose new action was never
logged for incidents like them (then no weighting can stand in for an outcome never seen).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from schemas.decision import Action, Decision, RemedyKind
from schemas.incident import Incident
from services.decision.domain.history import ZERO, CustomerHistory, PastIncident
from services.decision.domain.lifecycle import goodwill, refunded
from services.decision.domain.policy import Policy
from services.decision.domain.topup import given_by
from services.decision.fast.engine import decide

APOLOGY = RemedyKind.apology.value


def action_of(decision: Decision) -> str:
    """What the policy granted beyond the apology, as a canonical text: kinds in order, each
    with its money equivalent, and an offer as its options (a customer's choice is theirs,
    not the policy's, so it is left out)."""
    actions = list(decision.actions)
    offer = decision.offer
    if offer is not None and decision.choice is not None:  # the choice appended its option
        actions = actions[:len(actions) - len(offer.options[decision.choice.option].actions)]
    granted = _granted(actions)
    if offer is None:
        return granted
    options = " | ".join(_granted(option.actions) for option in offer.options)
    return f"{granted} + offer({options}; default {offer.default_option})"


def _granted(actions: Sequence[Action]) -> str:
    parts: dict[str, Decimal] = {}
    for action in actions:
        if action.kind is not RemedyKind.apology:
            kind = action.kind.value
            parts[kind] = parts.get(kind, ZERO) + action.value.amount
    if not parts:
        return APOLOGY
    return " + ".join(f"{kind} {amount.normalize():f}" for kind, amount in sorted(parts.items()))


def context_of(incident: Incident) -> str:
    """The cells the reward model and the coverage check group incidents by."""
    return f"{incident.type.value}/{incident.customer.tier.value}"


@dataclass(frozen=True)
class Logged:
    """A recorded decision with the outcome that followed it."""

    incident: Incident
    action: str
    probability: float  # of the logged arm: its share in the experiment, else 1
    reward: float  # 1 if the customer ordered again within the window, else 0
    experiment: str | None = None
    arm: str | None = None

    @classmethod
    def of(cls, decision: Decision, reordered: bool) -> Logged:
        arm = decision.experiment
        return cls(decision.incident, action_of(decision),
                   float(arm.probability) if arm else 1.0, 1.0 if reordered else 0.0,
                   arm.id if arm else None, arm.arm if arm else None)


def propensities(logged: Sequence[Logged]) -> list[float]:
    """The chance the logging policy took each decision's action: outside experiments 1; in
    one, the shares of every arm seen giving that action to incidents like this one (a
    holdout that gets the rule's remedies gives what a variant may give too, and weighting
    by one arm's share alone would count those incidents twice)."""
    arms: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for record in logged:
        if record.experiment is not None and record.arm is not None:
            key = (record.experiment, context_of(record.incident), record.action)
            arms[key][record.arm] = record.probability
    return [min(1.0, sum(arms[(r.experiment, context_of(r.incident), r.action)].values()))
            if r.experiment is not None else r.probability for r in logged]


def chosen_actions(incidents: Iterable[Incident], policy: Policy) -> list[str]:
    """The action `policy` takes for each incident (given in time order), deciding as the
    service would: each customer's earlier incidents in the history, and the daily budget
    spent by the decisions before."""
    histories: dict[str, CustomerHistory] = {}
    spent: dict[date, Decimal] = {}
    out = []
    for incident in incidents:
        now = incident.detected_at
        customer = incident.customer.id
        history = histories.get(customer, CustomerHistory())
        day = now.date()
        decision = decide(incident, history, policy, now,
                          budget_remaining=policy.guards.daily_budget - spent.get(day, ZERO))
        if decision.status.executable:
            spent[day] = spent.get(day, ZERO) + goodwill(decision)
        histories[customer] = history.plus(PastIncident(
            incident_id=incident.incident_id, type=incident.type,
            detection=incident.detection, decided_at=now, value=goodwill(decision),
            order_id=incident.order_id, outage_id=incident.outage_id,
            refunded=refunded(decision), given=tuple(given_by(decision).items())))
        out.append(action_of(decision))
    return out


@dataclass(frozen=True)
class Coverage:
    """Thresholds under which the history is taken not to cover the new policy."""

    min_matched: int = 100  # logged decisions whose action the new policy repeats
    min_ess: float = 50.0  # effective sample size of the weights, (sum w)^2 / sum w^2
    max_unlogged: float = 0.05  # share of incidents whose new action no similar one got


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


@dataclass
class Counterfactual:
    """The new policy's estimated reorder rate, or the reasons it cannot be told."""

    n: int
    logged_rate: float  # what the recorded decisions achieved
    matched: int
    ess: float
    unlogged: Counter[str] = field(default_factory=Counter)  # new actions never seen, counts
    actions: Counter[str] = field(default_factory=Counter)  # the new policy's, counts
    snips: Estimate | None = None
    dr: Estimate | None = None
    refused: list[str] = field(default_factory=list)

    @property
    def told(self) -> bool:
        return not self.refused


def estimate(logged: Sequence[Logged], chosen: Sequence[str], *,
             coverage: Coverage = Coverage(), resamples: int = 400,
             seed: int = 18) -> Counterfactual:
    """The new policy's reorder rate from `logged` (each with the new policy's action in
    `chosen`, in the same order)."""
    n = len(logged)
    if n != len(chosen):
        raise ValueError("one new action per logged decision")
    if n == 0:
        return Counterfactual(0, 0.0, 0, 0.0, refused=["no recorded decisions with outcomes"])
    seen: dict[str, set[str]] = defaultdict(set)
    for record in logged:
        seen[context_of(record.incident)].add(record.action)
    unlogged = Counter(new for record, new in zip(logged, chosen, strict=True)
                       if new not in seen[context_of(record.incident)])
    weights = [1.0 / chance if record.action == new else 0.0
               for record, new, chance in zip(logged, chosen, propensities(logged),
                                              strict=True)]
    matched = sum(w > 0 for w in weights)
    total, squares = sum(weights), sum(w * w for w in weights)
    ess = total * total / squares if squares else 0.0
    result = Counterfactual(n=n, logged_rate=sum(r.reward for r in logged) / n,
                            matched=matched, ess=ess, unlogged=unlogged,
                            actions=Counter(chosen))
    if matched < coverage.min_matched:
        result.refused.append(f"only {matched:,} recorded decisions took the new policy's "
                              f"action (at least {coverage.min_matched:,} needed)")
    if ess < coverage.min_ess:
        result.refused.append(f"effective sample size {ess:,.1f} is below {coverage.min_ess:g}")
    share = sum(unlogged.values()) / n
    if share > coverage.max_unlogged:
        never = ", ".join(f"{a} ({c:,})" for a, c in unlogged.most_common(3))
        result.refused.append(f"{share:.1%} of the incidents get an action never recorded for "
                              f"incidents like them (over {coverage.max_unlogged:.0%}): {never}")
    if result.refused:
        return result
    model = _reward_model(logged)
    # Each decision as (weight, outcome, model under the new action, model under the logged
    # one): both estimators are sums of these, and decisions alike in all four are
    # interchangeable, so a bootstrap resample is a multinomial draw over the distinct ones.
    kinds = Counter(
        (weight, record.reward, model(context_of(record.incident), new),
         model(context_of(record.incident), record.action))
        for record, new, weight in zip(logged, chosen, weights, strict=True))
    distinct = list(kinds)
    counts = [kinds[k] for k in distinct]
    drawn = list(_resampled(counts, resamples, seed))
    result.snips = _with_interval(_snips(distinct, counts),
                                  [_snips(distinct, d) for d in drawn])
    result.dr = _with_interval(_dr(distinct, counts), [_dr(distinct, d) for d in drawn])
    return result


Kind = tuple[float, float, float, float]  # weight, outcome, predicted new, predicted logged


def _snips(kinds: Sequence[Kind], counts: Sequence[int]) -> float:
    top = sum(c * w * r for (w, r, _, _), c in zip(kinds, counts, strict=True))
    bottom = sum(c * w for (w, _, _, _), c in zip(kinds, counts, strict=True))
    return top / bottom if bottom else 0.0


def _dr(kinds: Sequence[Kind], counts: Sequence[int]) -> float:
    total = sum(c * (new + w * (r - old))
                for (w, r, new, old), c in zip(kinds, counts, strict=True))
    return total / sum(counts)


def _resampled(counts: Sequence[int], resamples: int, seed: int) -> Iterator[list[int]]:
    """Bootstrap resamples of the decisions (as many, drawn with replacement), as counts of
    each distinct kind; seeded, so the intervals are reproducible."""
    rng = random.Random(seed)
    n, places = sum(counts), range(len(counts))
    cumulative = list(itertools.accumulate(counts))
    for _ in range(resamples):
        drawn = Counter(rng.choices(places, cum_weights=cumulative, k=n))
        yield [drawn[i] for i in places]


def _with_interval(value: float, resampled: Sequence[float]) -> Estimate:
    ordered = sorted(resampled)
    last = len(ordered) - 1
    return Estimate(value, ordered[round(0.025 * last)], ordered[round(0.975 * last)])


def _reward_model(logged: Sequence[Logged], prior: int = 20) -> Callable[[str, str], float]:
    """The mean outcome of an action in a context, shrunk toward the action's mean over all
    contexts (by `prior` pseudo-decisions), and that toward the overall mean: cells with few
    decisions borrow from the wider ones instead of swinging on a handful of outcomes."""
    overall = sum(r.reward for r in logged) / len(logged)
    by_action: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    by_cell: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for record in logged:
        for sums in (by_action[record.action],
                     by_cell[(context_of(record.incident), record.action)]):
            sums[0] += record.reward
            sums[1] += 1
    action_mean = {a: (s + prior * overall) / (c + prior) for a, (s, c) in by_action.items()}

    def predict(context: str, action: str) -> float:
        wide = action_mean.get(action, overall)
        total, count = by_cell.get((context, action), (0.0, 0.0))
        return (total + prior * wide) / (count + prior)

    return predict
