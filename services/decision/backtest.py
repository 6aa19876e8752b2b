"""Backtests: re-decide past (or generated) incidents under one or more policies, without side
effects, simulating each policy's own customer histories and daily budgets."""

from __future__ import annotations

import gc
import pickle
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import IO, Any

from schemas.common import CustomerSnapshot, Money, Tier
from schemas.decision import RemedyKind
from schemas.incident import Incident, IncidentType, Severity
from services.decision.domain.history import ZERO, CustomerHistory, PastIncident
from services.decision.domain.ids import deterministic_id
from services.decision.domain.policy import Policy
from services.decision.domain.topup import given_by_items
from services.decision.fast.engine import applying_rules, evaluate, rules_read_compensation
from services.decision.fast.remedies import Item, built, built_from, restitution
from services.registry.incident_types import INCIDENT_TYPES


@dataclass
class Tally:
    """What one policy would have done with the incidents."""

    version: str
    currency: str
    decisions: int = 0
    goodwill: Decimal = ZERO  # money equivalent carried out (held decisions excluded)
    restitution: Decimal = ZERO  # given back in full, outside caps and budgets (held excluded;
    # of an offer, its default option's, as for the remedies counted)
    held: int = 0
    held_value: Decimal = ZERO
    offers: int = 0
    apology_only: int = 0
    remedies: Counter[str] = field(default_factory=Counter)
    remedy_value: dict[str, Decimal] = field(default_factory=dict)
    caps: Counter[str] = field(default_factory=Counter)
    cut: Decimal = ZERO

    @property
    def cost(self) -> Decimal:
        """Goodwill and restitution together."""
        return self.goodwill + self.restitution

    @property
    def goodwill_per_incident(self) -> Decimal:
        return (
            (self.goodwill / self.decisions).quantize(Decimal("0.01")) if self.decisions else ZERO
        )


@dataclass
class _Simulation:
    policy: Policy
    tally: Tally
    histories: dict[str, CustomerHistory] = field(default_factory=dict)
    spent: dict[date, Decimal] = field(default_factory=dict)

    def run(self, incident: Incident, applying: Sequence[int] | None = None) -> None:
        now = incident.detected_at
        day = now.date()
        spent = self.spent.get(day, ZERO)
        customer = incident.customer.id
        history = self.histories.get(customer, _NO_HISTORY)
        result = evaluate(
            incident,
            history,
            self.policy,
            now,
            budget_remaining=self.policy.guards.daily_budget - spent,
            trace=False,
            applying=applying,
        )
        tally = self.tally
        tally.decisions += 1
        value = result.value  # goodwill: what caps and the budget count
        held = bool(result.review_reason)
        if held:
            tally.held += 1
            tally.held_value += value + result.restitution
        else:
            tally.goodwill += value
            self.spent[day] = spent + value
        draft = result.draft
        if draft.offer_rule is not None:
            tally.offers += 1
        items = draft.base
        if draft.options:  # the default option is what most customers end up with
            default = (
                draft.offer_rule.offer.default
                if (draft.offer_rule and draft.offer_rule.offer)
                else 0
            )
            items = items + draft.options[default][1]
        if not items:
            tally.apology_only += 1
        elif result.restitution and not held:  # given back: the default option's, like the rest
            tally.restitution += restitution(items)
        remedies, remedy_value = tally.remedies, tally.remedy_value
        for item in items:
            kind = _KIND_NAMES[item.kind]
            remedies[kind] += 1
            remedy_value[kind] = remedy_value.get(kind, ZERO) + item.value
        for cut in draft.cuts:
            tally.caps[cut.cap] += 1
            tally.cut += cut.cut
        self.histories[customer] = history.plus(
            PastIncident(
                incident.incident_id,
                incident.type,
                incident.detection,
                now,
                value,
                order_id=incident.order_id,
                outage_id=incident.outage_id,
                refunded=_refunded(items),
                given=given_by_items(items, bool(draft.options)),
            )
        )


def _refunded(items: Sequence[Item]) -> Decimal:
    value = ZERO
    for item in items:
        if item.kind is _REFUND_KIND:
            value += item.value
    return value


_REFUND_KIND = RemedyKind.refund
_NO_HISTORY = CustomerHistory()
_KIND_NAMES = {kind: kind.value for kind in RemedyKind}  # faster than `kind.value`


def backtest(
    incidents: Iterable[Incident],
    policies: Sequence[Policy],
    progress: Callable[[int], None] | None = None,
    every: int = 1000,
) -> list[Tally]:
    """Decide every incident (in the order given, which should be time order) under each
    policy; `progress(n)` is called every `every` incidents."""
    return _backtest(((incident, None) for incident in incidents), policies, progress, every)


# An incident, and the rules found beforehand to apply to it under each policy (or None).
_Found = tuple[Incident, tuple[tuple[int, ...], ...] | None]


def _backtest(
    found: Iterable[_Found],
    policies: Sequence[Policy],
    progress: Callable[[int], None] | None,
    every: int,
) -> list[Tally]:
    runs = [_Simulation(p, Tally(p.version, p.currency)) for p in policies]
    n = 0
    with _collector_paused():
        for incident, applying in found:
            if applying is None:
                for run in runs:
                    run.run(incident)
            else:
                for run, rules in zip(runs, applying, strict=True):
                    run.run(incident, rules)
            n += 1
            if progress is not None and n % every == 0:
                progress(every)
    if progress is not None:
        progress(n % every)
    return [run.tally for run in runs]


def backtest_generated(
    count: int,
    policies: Sequence[Policy],
    *,
    seed: int = 7,
    start: datetime,
    days: int = 30,
    currency: str = "EUR",
    customers: int | None = None,
    progress: Callable[[int], None] | None = None,
    every: int = 1000,
    processes: int = 2,
) -> list[Tally]:
    """`backtest(generate_incidents(count, ...), policies, progress, every)`: the same
    tallies, sooner. With two processes (for enough incidents, and policies whose rules do
    not look at the compensation granted before), a second process draws the incidents and
    finds the rules that apply to each, which needs the customers' earlier incidents but not
    what they were granted; this one builds the incidents again from the draws and settles
    the caps, the reviews and the tallies, in order."""
    generated = _Generated(count, seed, start, days, currency, customers)
    if (
        processes < 2
        or count < _WORTH_A_PROCESS
        or any(rules_read_compensation(policy) for policy in policies)
    ):
        return backtest(generated.incidents(), policies, progress, every)
    # A fresh interpreter that imports only what finding rules needs: not a fork (the
    # caller may run threads), and not multiprocessing's spawn, which imports the caller's
    # program again (the whole `amends` command, a second of the child's start).
    finder = subprocess.Popen(
        [sys.executable, "-m", "services.decision.backtest_rules"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert finder.stdin is not None
    assert finder.stdout is not None
    try:
        pickle.dump((generated, list(policies)), finder.stdin)
        finder.stdin.close()
        return _backtest(_found_elsewhere(Received(finder.stdout), generated), policies,
                         progress, every)
    finally:
        finder.stdout.close()
        if finder.poll() is None:
            finder.terminate()
        finder.wait()


_WORTH_A_PROCESS = 100_000  # fewer incidents take less than starting a process does
_BATCH = 2_000


class Sent:
    """One end of the pipe between the processes: each object pickled onto a stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def send(self, obj: object) -> None:
        pickle.dump(obj, self._stream, protocol=pickle.HIGHEST_PROTOCOL)

    def close(self) -> None:
        self._stream.flush()


class Received:
    """The other end: the objects in the order sent; EOFError when the sender is gone."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def recv(self) -> Any:
        return pickle.load(self._stream)  # noqa: S301 -- our own child process writes it


def find_rules(sending: Sent, generated: _Generated, policies: list[Policy]) -> None:
    """In the second process of `backtest_generated`: send each incident's draw with the
    rules that apply to it under each policy, in batches, then None."""
    build = generated.builder()
    histories: dict[str, CustomerHistory] = {}  # without the values granted: not known here
    batch: list[tuple[_Draw, tuple[tuple[int, ...], ...]]] = []
    with _collector_paused():
        for n, draw in enumerate(generated.draws()):
            incident = build(n, draw)
            now, customer = incident.detected_at, incident.customer.id
            history = histories.get(customer, _NO_HISTORY)
            found = tuple(applying_rules(incident, history, policy, now) for policy in policies)
            batch.append((draw, found))
            histories[customer] = history.plus(
                PastIncident(incident.incident_id, incident.type, incident.detection, now,
                             order_id=incident.order_id, outage_id=incident.outage_id)
            )
            if len(batch) == _BATCH:
                sending.send(batch)
                batch = []
    sending.send(batch)
    sending.send(None)
    sending.close()


def _found_elsewhere(receiving: Received, generated: _Generated) -> Iterator[_Found]:
    """The incidents sent by `find_rules`, built again, with the rules found for them."""
    build = generated.builder()
    n = 0
    while True:
        try:
            batch = receiving.recv()
        except EOFError as exc:
            raise RuntimeError("the process finding the backtest's rules stopped") from exc
        if batch is None:
            return
        for draw, applying in batch:
            yield build(n, draw), applying
            n += 1


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A backtest keeps millions of small objects alive (the customers' histories), which
    the cyclic garbage collector would scan again and again: up to a third of the time of a
    large backtest. They make no reference cycles (reference counting frees what is dropped),
    so the collector is paused while the backtest runs."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- generated incidents ---------------------------------------------------------------

_INCIDENT_DEFAULTS: dict[str, Any] = {
    name: info.get_default(call_default_factory=True)
    for name, info in Incident.model_fields.items()
    if not info.is_required()
}
# The types drawn, in the registry's order, with their weights and own draws.
_TYPES = [(kind, entry.generated) for kind, entry in INCIDENT_TYPES.items()]
_TIERS = [(Tier.standard, 60), (Tier.silver, 25), (Tier.gold, 12), (Tier.platinum, 3)]


def _money(amount: Decimal, currency: str) -> Money:
    return built(Money, amount=amount, currency=currency)


def generate_incidents(
    count: int,
    *,
    seed: int = 7,
    start: datetime,
    days: int = 30,
    currency: str = "EUR",
    customers: int | None = None,
) -> Iterator[Incident]:
    """`count` plausible incidents spread evenly over `days`, in time order, the same for the
    same seed; about one customer in three has more than one."""
    return _Generated(count, seed, start, days, currency, customers).incidents()


# What `_Generated.draws` makes of one incident: the customer's number, the customer's tier
# and lifetime value in cents the first time the number comes up, the type, the order value
# in cents, the type's own draw (minutes, or the item's share of the order in percent) and
# the id.
_Draw = tuple[int, tuple[int, int] | None, int, int, int | None, str]


@dataclass(frozen=True)
class _Generated:
    """What `generate_incidents` makes, in two steps: the random draws and the ids (small
    tuples, cheap to send to another process), then the incidents built from them."""

    count: int
    seed: int
    start: datetime
    days: int
    currency: str
    customers: int | None

    def incidents(self) -> Iterator[Incident]:
        build = self.builder()
        for n, draw in enumerate(self.draws()):
            yield build(n, draw)

    def builder(self) -> _Builder:
        step = timedelta(days=self.days) / max(self.count, 1)
        return _Builder(self.start, step, self.currency)

    def draws(self) -> Iterator[_Draw]:
        rng = random.Random(self.seed)
        randrange, choices = rng.randrange, rng.choices
        pool = self.customers or max(1, self.count // 3)
        type_cum = list(accumulate(generated.weight for _, generated in _TYPES))
        tier_cum = list(accumulate(weight for _, weight in _TIERS))
        type_positions, tier_positions = range(len(_TYPES)), range(len(_TIERS))
        seen: set[int] = set()
        seed = str(self.seed)
        for n in range(self.count):
            number = randrange(pool)
            first: tuple[int, int] | None = None
            if number not in seen:
                seen.add(number)
                tier = choices(tier_positions, cum_weights=tier_cum)[0]
                first = (tier, randrange(0, 500_000))
            position = choices(type_positions, cum_weights=type_cum)[0]
            kind, generated = _TYPES[position]
            order_cents = randrange(500, 30_000)
            own = generated.draw(rng)
            incident_id = deterministic_id("incident", _TYPE_NAMES[kind], "generated", seed, str(n))
            yield number, first, position, order_cents, own, incident_id


class _Builder:
    """Builds the incidents of `_Generated.draws`, in order (it keeps the customers it has
    seen)."""

    def __init__(self, start: datetime, step: timedelta, currency: str) -> None:
        self.start, self.step, self.currency = start, step, currency
        self.customers: dict[int, CustomerSnapshot] = {}
        self.moneys: dict[int, Money] = {}  # by the amount in cents
        # Every field, in the order the models were first built in (their JSON follows it).
        self.fields: dict[str, Any] = {
            **_INCIDENT_DEFAULTS,
            **dict.fromkeys(_REQUIRED),
            "severity": Severity.medium,
            "source": "generated",
        }

    def __call__(self, n: int, draw: _Draw) -> Incident:
        number, first, position, order_cents, own, incident_id = draw
        currency = self.currency
        at = self.start + self.step * n
        customer = self.customers.get(number)
        if customer is None:
            assert first is not None, "a customer's first incident comes with the customer"
            tier, lifetime_cents = first
            customer = self.customers[number] = built(
                CustomerSnapshot,
                id=f"gen-{number}",
                tier=_TIERS[tier][0],
                lifetime_value=_money(Decimal(lifetime_cents).scaleb(-2), currency),
                locale="en",
                contact=None,
                customer_since=None,
            )
        kind, generated = _TYPES[position]
        incident = self.fields.copy()
        incident["order_value"] = self.money(order_cents)
        incident.update(generated.fields(own, order_cents, self.money))
        incident["incident_id"] = incident_id
        incident["type"] = kind
        incident["detection"] = generated.detection
        incident["customer"] = customer
        incident["occurred_at"] = incident["detected_at"] = at
        incident["order_id"] = f"gen-order-{n}"
        return built_from(Incident, incident)

    def money(self, cents: int) -> Money:
        """An amount in cents as Money: made once per amount, as incidents share it."""
        made = self.moneys.get(cents)
        if made is None:
            made = self.moneys[cents] = _money(Decimal(cents).scaleb(-2), self.currency)
        return made


# the incident's fields without a default, in the order they were first built in
_REQUIRED = ("incident_id", "type", "detection", "customer", "occurred_at", "detected_at", "source")
_TYPE_NAMES = {kind: kind.value for kind in IncidentType}
