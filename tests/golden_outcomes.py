"""Digests of what fulfilment publishes and sends for a fixed set of golden decisions (see
tests/golden.py): the outcome events, the task events, the dead letters, and every message
delivered through a channel (channel, key, kind, locale, recipient, subject, text, html).

The service runs over the hand-written fakes (tests/fakes/fulfilment.py) with a fixed clock,
e-mail and webhook channels (or e-mail only, see RUNS) and a gateway that makes every
refund (or, in one run, fails every one). Per policy, every fifth golden decision and every
held one is delivered in batches of 25, each customer given a contact and a locale; then
their follow-up revisions: a choice of each offer's option (cycling through the options and
who chose), a verdict on each held decision (approved, or every third one rejected) and, for
an approved held offer, the choice after it.

Left out, being random by nature: voucher codes (drawn with `secrets`; each is replaced by
`<voucher of KEY>` wherever it appears). The gateway's refund ids count calls, so they are
replaced by `<refund of KEY>`: the order of calls is not behaviour. Everything else is
deterministic, customer-link tokens included (signed with the test key at the fixed clock).
Entries are digested in sorted order, so a harmless reordering within a batch changes nothing.

A redesign must leave them byte-identical; `python -m tests.golden_outcomes --write` records
new digests when a change of behaviour is intended (say so in the commit message).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from schemas.common import Channel, Contact, Money
from schemas.decision import Choice, Decision, DecisionStatus, Review
from services.fulfilment.gateway import RefundResult, RefundStatus
from services.fulfilment.messages import LOCALES
from tests.component.fulfilment.harness import Fulfilment
from tests.fakes.fulfilment import FakeChannel
from tests.golden import decisions, policies

DIGESTS = Path(__file__).with_name("golden_outcomes.json")
NOW = datetime(2026, 3, 5, 9, tzinfo=UTC)  # after every golden decision
STRIDE = 5  # of the 1,500 golden decisions per policy, every fifth
BATCH = 25


def reachable(decision: Decision) -> Decision:
    """The decision with a way to reach its customer (generated incidents carry none) and a
    locale, both by the customer's number: e-mail preferred, the webhook preferred, SMS
    preferred (no SMS channel: e-mail), or no e-mail at all (the webhook reaches them); each
    locale in turn. Validated again, as fulfilment reads it."""
    customer = decision.incident.customer
    n = int(customer.id.rsplit("-", 1)[-1])
    email = None if n % 4 == 3 else f"{customer.id}@example.com"
    preferred = (Channel.email, Channel.webhook, Channel.sms, Channel.email)[n % 4]
    contact = Contact(email=email, webhook_url=f"https://hooks.example/{customer.id}",
                      preferred_channel=preferred)
    data = decision.model_dump(mode="json")
    data["incident"]["customer"]["contact"] = contact.model_dump(mode="json")
    data["incident"]["customer"]["locale"] = LOCALES[n % len(LOCALES)]
    return Decision.model_validate(data)


def sample(name: str) -> list[Decision]:
    """Every STRIDE-th golden decision (so late ones, cut by the day's budget, are among
    them) and every held one, in their order."""
    return [reachable(d) for i, d in enumerate(decisions(policies()[name]))
            if i % STRIDE == 0 or d.status is DecisionStatus.held]


def _value(decision: Decision, restitution: bool | None = None) -> Money:
    amount = sum((a.value.amount for a in decision.actions
                  if restitution is None or a.restitution is restitution),
                 Money.of("0", decision.total_value.currency).amount)
    return Money(amount=amount, currency=decision.total_value.currency)


def choose(decision: Decision, option: int,
           by: Literal["customer", "default", "support"], at: datetime) -> Decision:
    """The revision the decision service publishes when an offer's option is chosen."""
    assert decision.offer is not None
    picked = decision.offer.options[option]
    made = decision.model_copy(update={
        "revision": decision.revision + 1, "status": DecisionStatus.approved,
        "choice": Choice(option=option, label=picked.label, by=by, at=at),
        "actions": [*decision.actions, *picked.actions],
        "explanation": f"{decision.explanation} You chose {picked.label}."})
    return made.model_copy(update={"total_value": _value(made),
                                   "goodwill_value": _value(made, restitution=False),
                                   "restitution_value": _value(made, restitution=True)})


def review(decision: Decision, verdict: Literal["approved", "rejected"],
           at: datetime) -> Decision:
    """The revision the decision service publishes when a reviewer decides a held one."""
    said = Review(verdict=verdict, reviewer="reviewer-1", reason="checked", at=at)
    if verdict == "approved":
        status = (DecisionStatus.awaiting_choice if decision.offer is not None
                  else DecisionStatus.approved)
        return decision.model_copy(update={
            "revision": decision.revision + 1, "status": status, "review": said,
            "explanation": f"{decision.explanation} Approved by reviewer-1: checked"})
    nothing = Money.of("0", decision.total_value.currency)
    return decision.model_copy(update={
        "revision": decision.revision + 1, "status": DecisionStatus.rejected, "review": said,
        "actions": [a for a in decision.actions if a.kind.value == "apology"], "offer": None,
        "total_value": nothing, "goodwill_value": nothing, "restitution_value": nothing,
        "explanation": f"{decision.explanation} After review only the apology is sent: "
                       "checked"})


def follow_ups(first: Sequence[Decision], at: datetime) -> Iterator[Decision]:
    """The later revisions of `first`, in a fixed order."""
    ways: tuple[Literal["customer", "default", "support"], ...] = (
        "customer", "default", "support")
    offers = held = 0
    for decision in first:
        current = decision
        if current.status is DecisionStatus.held:
            verdict: Literal["approved", "rejected"] = (
                "rejected" if held % 3 == 2 else "approved")
            held += 1
            current = review(current, verdict, at)
            yield current
        if current.status is DecisionStatus.awaiting_choice and current.offer is not None:
            option = offers % len(current.offer.options)
            yield choose(current, option, ways[offers % len(ways)], at + timedelta(hours=1))
            offers += 1


def inputs(name: str) -> tuple[list[Decision], list[Decision]]:
    first = sample(name)
    return first, list(follow_ups(first, NOW - timedelta(hours=2)))


def _batches(items: Sequence[Decision]) -> Iterator[Sequence[Decision]]:
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


def _plain(text: str, secrets: dict[str, str]) -> str:
    for secret, name in secrets.items():
        text = text.replace(secret, name)
    return text


# Runs: the policy; whether a webhook channel is configured beside e-mail (without it, the
# customers with no e-mail address cannot be reached: their apologies fail and are
# dead-lettered); whether the gateway fails every refund (the apologies then leave them out).
RUNS = {"default": ("default", True, False), "tight": ("tight", True, False),
        "default-email-only": ("default", False, False),
        "default-refunds-fail": ("default", True, True)}
REFUSAL = "the card has expired"


async def published(run: str) -> dict[str, list[str]]:
    """What fulfilment publishes and sends in this run, as sorted JSON lines."""
    name, webhook, refunds_fail = RUNS[run]
    made = Fulfilment.with_email()
    made.clock.now = NOW
    if refunds_fail:  # more than the run asks for; each id is replaced by its key below
        made.gateway.answers = [RefundResult(RefundStatus.failed, f"rf_{n}", REFUSAL)
                                for n in range(1, 2001)]
    if webhook:
        made.channels[Channel.webhook] = FakeChannel("webhook", made.clock)
        made.service.channels = dict(made.channels)
    first, later = inputs(name)
    for batch in _batches(first):
        await made.deliver(*batch)
    made.clock.advance(timedelta(hours=2))
    for batch in _batches(later):
        await made.deliver(*batch)
    secrets = {v.code: f"<voucher of {v.action_key}>"
               for v in made.fakes.vouchers.vouchers.values()}
    secrets |= {r.gateway_id: f"<refund of {key}>" for key, r in made.gateway.refunds.items()}
    # Longest first, so that no id is replaced inside a longer one (re_1 in re_12).
    secrets = dict(sorted(secrets.items(), key=lambda kv: -len(kv[0])))
    settings = made.settings
    found: dict[str, list[str]] = {"inputs": [d.model_dump_json() for d in [*first, *later]]}
    for kind, topic in (("outcomes", settings.outcomes_topic), ("tasks", settings.tasks_topic),
                        ("dead_letters", settings.deadletter_topic)):
        found[kind] = sorted(_plain(m.value.decode(), secrets) for m in made.publisher.on(topic))
    found["messages"] = sorted(
        _plain(json.dumps([channel.name, m.idempotency_key, m.kind, m.locale, m.recipient,
                           m.subject, m.text, m.html]), secrets)
        for channel in made.channels.values() for m in channel.sent)
    return found


def digests() -> tuple[dict[str, str], dict[str, int]]:
    """Per policy and per kind of entry: a digest, and how many entries it covers."""
    found: dict[str, str] = {}
    counts: dict[str, int] = {}
    for run in RUNS:
        for kind, lines in asyncio.run(published(run)).items():
            found[f"{run}/{kind}"] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
            counts[f"{run}/{kind}"] = len(lines)
    return found, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="record the digests")
    args = parser.parse_args()
    found, counts = digests()
    if args.write:
        DIGESTS.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    sys.stdout.write(json.dumps({"digests": found, "counts": counts}, indent=2,
                                sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
