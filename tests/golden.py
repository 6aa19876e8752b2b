"""Digests of what the domain decides and says for a fixed set of generated incidents: the
decisions (as JSON) and the apologies and follow-ups in every locale, under a few policies.

A redesign must leave them byte-identical; `python -m tests.golden --write` records new
digests when a change of behaviour is intended (say so in the commit message).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from schemas.decision import Decision, RemedyKind
from services.decision.backtest import generate_incidents
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy, load_policy
from services.decision.domain.topup import given_by
from services.fulfilment.messages import LOCALES, MessageExtras, render_apology, render_follow_up
from services.registry.incident_types import INCIDENT_TYPES

DIGESTS = Path(__file__).with_name("golden.json")
START = datetime(2026, 3, 1, 6, tzinfo=UTC)
COUNT = 1500


# An experiment on the default policy's 30-minute-to-2-hour delays: 200 points (the rule's
# own), 300 or 600, and a holdout with the apology only.
EXPERIMENT: dict[str, Any] = {
    "id": "delay-points", "rule": "delay-30min-to-2h",
    "variants": [{"id": "points-300", "share": "0.45", "grant": [{"points": 300}]},
                 {"id": "points-600", "share": "0.45", "grant": [{"points": 600}]}],
    "holdout": {"share": "0.10", "gets": "apology"}}


def policies() -> dict[str, Policy]:
    """The default policy, one with small caps, a small budget and a low review threshold,
    so that cuts, budget and review paths are taken too, and the default with an experiment."""
    default = _as_recorded(load_policy("deploy/policy/default.yaml"))
    data = default.model_dump(mode="json")
    data["version"] = f"{default.version}-tight"
    data["guards"].update(incident_cap="20.00", customer_cap="35.00", daily_budget="900.00")
    tried = default.model_dump(mode="json") | {"version": f"{default.version}-experiment",
                                                "experiment": EXPERIMENT}
    return {"default": default, "tight": Policy.model_validate(data),
            "experiment": Policy.model_validate(tried)}


def _as_recorded(policy: Policy) -> Policy:
    """The policy without the rules of incident types the golden incidents never include
    (generated weight 0, such as negative_review, added after the digests were recorded):
    every decision traces every rule, so such a rule would change every decision's trace
    while deciding nothing differently."""
    never = {t.value for t, e in INCIDENT_TYPES.items() if e.generated.weight == 0}
    rules = [r for r in policy.rules
             if r.when.type is None or not {t.value for t in r.when.type} <= never]
    return policy.model_copy(update={"rules": rules})


def _refunded(decision: Decision) -> Decimal:
    def refunds(actions: Any) -> Decimal:
        return sum((a.amount.amount for a in actions
                    if a.kind is RemedyKind.refund and a.amount is not None), Decimal(0))

    pending = decision.offer.options if decision.offer is not None else []
    return refunds(decision.actions) + max((refunds(o.actions) for o in pending),
                                           default=Decimal(0))


def decisions(policy: Policy) -> Iterator[Decision]:
    """The generated incidents decided in order, each seeing the histories and the budget
    the ones before it left (as the decision service does)."""
    histories: dict[str, CustomerHistory] = {}
    spent: dict[Any, Decimal] = {}
    for incident in generate_incidents(COUNT, start=START, days=3, seed=23):
        now = incident.detected_at
        history = histories.get(incident.customer.id, CustomerHistory())
        left = policy.guards.daily_budget - spent.get(now.date(), Decimal(0))
        decision = decide(incident, history, policy, now, budget_remaining=left)
        goodwill = (decision.goodwill_value or decision.total_value).amount
        if decision.status.executable:
            spent[now.date()] = spent.get(now.date(), Decimal(0)) + goodwill
        histories[incident.customer.id] = history.plus(PastIncident(
            incident_id=incident.incident_id, type=incident.type,
            detection=incident.detection, decided_at=now, value=goodwill,
            order_id=incident.order_id, outage_id=incident.outage_id,
            refunded=_refunded(decision), given=tuple(given_by(decision).items())))
        yield decision


def _extras(decision: Decision) -> MessageExtras:
    codes = {a.idempotency_key: f"AM-{n:04d}" for n, a in enumerate(decision.actions)
             if a.kind is RemedyKind.voucher}
    return MessageExtras(customer_name="Ana Pop", voucher_codes=codes,
                         signature="The Amends team",
                         page_url=f"https://amends.example/c/{decision.decision_id}",
                         now=decision.decided_at)


def digests() -> dict[str, str]:
    """Per policy: one digest of the decisions, and one of the messages per locale."""
    found: dict[str, str] = {}
    for name, policy in policies().items():
        made = hashlib.sha256()
        said = {locale: hashlib.sha256() for locale in LOCALES}
        for decision in decisions(policy):
            made.update(decision.model_dump_json().encode())
            extras = _extras(decision)
            for locale in LOCALES:
                messages = [render_apology(decision, locale, extras)]
                if decision.offer is not None or decision.review_reason:
                    messages.append(render_follow_up(decision, decision.actions[1:], locale,
                                                     extras))
                for message in messages:
                    said[locale].update(
                        "\x00".join((message.subject, message.text, message.html)).encode())
        found[f"{name}/decisions"] = made.hexdigest()
        for locale, digest in said.items():
            found[f"{name}/messages/{locale}"] = digest.hexdigest()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="record the digests")
    args = parser.parse_args()
    found = digests()
    if args.write:
        DIGESTS.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    sys.stdout.write(json.dumps(found, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
