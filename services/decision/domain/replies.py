"""Public replies to negative reviews (ADR 0017): the draft, a person's steps on it, and the
SLA. Pure: the store keeps the facts (`Reply` and its `ReplyStep`s, insert-only), this
module folds them into where a reply stands and when it is late; time is passed in.

A reply says only what the decision did: the apology, and the remedies it carried out
(never their amounts: the amounts are the customer's business, not the public's); that the
cause is fixed only when the incident says so; and it invites the customer to a private
channel for their order. There is no step that removes or hides the review: a review stays
where the customer put it, and the only thing a person does with a reply is edit, approve
and post it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from jinja2 import Environment, PackageLoader, StrictUndefined

from schemas.common import deterministic_id
from schemas.decision import Decision, RemedyKind
from schemas.incident import IncidentType

LOCALES = ("en", "ru", "ro")
TEMPLATE = "review_reply.txt.j2"
TEXT_MAX_CHARS = 2000  # what review platforms take for an owner's reply, with room


class ReplyStepKind(StrEnum):
    """What a person does with a drafted reply. Nothing here deletes or hides a review."""

    edited = "edited"
    approved = "approved"
    posted = "posted"


class ReplyState(StrEnum):
    drafted = "drafted"
    approved = "approved"
    posted = "posted"


class ReplyQueue(StrEnum):
    """The first queue takes every reply; one still unposted when the SLA's target passes
    goes to the second (leads), and stays there until it is posted."""

    replies = "replies"
    escalated = "escalated"


@dataclass(frozen=True)
class ReplySla:
    target: timedelta  # post within this of the review
    limit: timedelta  # never later than this (the alert is critical past it)


@dataclass(frozen=True)
class Reply:
    """The drafted reply to one review, under an id derived from its decision's."""

    reply_id: str
    decision_id: str
    incident_id: str
    customer_id: str
    tenant: str | None
    locale: str
    platform: str
    review_url: str
    rating: int
    review_posted_at: datetime
    drafted_at: datetime
    draft: str
    remedies: tuple[str, ...]  # the remedy kinds the draft names (none: held for review)


@dataclass(frozen=True)
class ReplyStep:
    """One thing a person did with a reply, under a key that makes it happen once: an edit
    by its number, the approval and the posting once per reply."""

    reply_id: str
    kind: ReplyStepKind
    number: int
    by: str
    at: datetime
    text: str = ""
    public_url: str | None = None

    @property
    def key(self) -> str:
        return step_key(self.reply_id, self.kind, self.number)


def reply_id(decision_id: str) -> str:
    return deterministic_id("reply", decision_id)


def step_key(reply: str, kind: ReplyStepKind, number: int = 0) -> str:
    return f"{reply}|{kind.value}|{number}"


@dataclass(frozen=True)
class ReplyView:
    """A reply as it stands: its text now, its state, and where it is against the SLA."""

    reply: Reply
    text: str
    state: ReplyState
    edits: int
    approved_by: str | None
    posted_by: str | None
    posted_at: datetime | None
    public_url: str | None
    due_at: datetime
    limit_at: datetime
    overdue: bool  # unposted past the target (or posted after it)
    breached: bool  # unposted past the limit (or posted after it)

    @property
    def queue(self) -> ReplyQueue:
        return ReplyQueue.escalated if self.overdue else ReplyQueue.replies

    def age(self, now: datetime) -> timedelta:
        """From the review to the reply posted, or to now while it is not."""
        return (self.posted_at or now) - self.reply.review_posted_at


def view(reply: Reply, steps: list[ReplyStep], sla: ReplySla, now: datetime) -> ReplyView:
    """Fold a reply's steps, oldest first (by edit number, then approval, then posting)."""
    order = {ReplyStepKind.edited: 0, ReplyStepKind.approved: 1, ReplyStepKind.posted: 2}
    text, edits = reply.draft, 0
    approved = posted = None
    for step in sorted(steps, key=lambda s: (order[s.kind], s.number)):
        if step.kind is ReplyStepKind.edited:
            text, edits = step.text, step.number
        elif step.kind is ReplyStepKind.approved:
            text, approved = step.text, step
        else:
            posted = step
    state = (ReplyState.posted if posted else
             ReplyState.approved if approved else ReplyState.drafted)
    due, limit = reply.review_posted_at + sla.target, reply.review_posted_at + sla.limit
    until = posted.at if posted else now
    return ReplyView(reply=reply, text=text, state=state, edits=edits,
                     approved_by=approved.by if approved else None,
                     posted_by=posted.by if posted else None,
                     posted_at=posted.at if posted else None,
                     public_url=posted.public_url if posted else None,
                     due_at=due, limit_at=limit, overdue=until >= due, breached=until >= limit)


class ReplyRefusedError(ValueError):
    """A step the reply's state does not allow; `detail` says why, for a person."""

    def __init__(self, detail: str, status: int = 409) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


def next_step(current: ReplyView, kind: ReplyStepKind, by: str, at: datetime, *,
              text: str | None = None, public_url: str | None = None) -> ReplyStep:
    """The step a person asks for, if the reply allows it: edits and the approval before it
    is posted, the posting only once approved (by anyone with the role: the approval is the
    check, and the text posted is the text approved)."""
    if current.state is ReplyState.posted:
        raise ReplyRefusedError("The reply is posted already; it stays as posted.")
    if kind is ReplyStepKind.posted:
        if current.state is not ReplyState.approved:
            raise ReplyRefusedError("Approve the reply's text before marking it posted.")
        if not public_url or not public_url.startswith(("https://", "http://")):
            raise ReplyRefusedError("Give the reply's public address (http or https).", 422)
        return ReplyStep(current.reply.reply_id, kind, 0, by, at, current.text, public_url)
    body = (text if text is not None else current.text).strip()
    if not body or len(body) > TEXT_MAX_CHARS:
        raise ReplyRefusedError(f"The reply needs between 1 and {TEXT_MAX_CHARS} characters.",
                                422)
    if kind is ReplyStepKind.approved:
        if current.state is ReplyState.approved:
            raise ReplyRefusedError("The reply is approved already.")
        return ReplyStep(current.reply.reply_id, kind, 0, by, at, body)
    if current.state is ReplyState.approved:
        raise ReplyRefusedError("The reply is approved; its approved text is what gets posted.")
    return ReplyStep(current.reply.reply_id, kind, current.edits + 1, by, at, body)


# --- the draft -----------------------------------------------------------------------------

@functools.cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("services.decision", "templates"),
                       autoescape=False,  # noqa: S701 - plain text for a review platform's box; the
                       # context is numbers and fixed words, and every page escapes it
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def resolve_locale(locale: str | None) -> str:
    base = (locale or "en").replace("_", "-").split("-")[0].lower()
    return base if base in LOCALES else "en"


def done_remedies(decision: Decision) -> tuple[str, ...]:
    """The remedies beyond the apology the decision carried out, each kind once, in order;
    none while a person still has to approve them."""
    if not decision.status.executable:
        return ()
    kinds: list[str] = []
    for action in decision.actions:
        if action.kind is not RemedyKind.apology and action.kind.value not in kinds:
            kinds.append(action.kind.value)
    return tuple(kinds)


def render_reply(locale: str, *, rating: int, remedies: tuple[str, ...],
                 cause_fixed: bool) -> str:
    """The reply's text in `locale`, tidied to single spaces and short paragraphs."""
    template = _environment().get_template(f"{resolve_locale(locale)}/{TEMPLATE}")
    rendered = template.render(rating=rating, remedies=list(remedies), cause_fixed=cause_fixed)
    paragraphs = [" ".join(p.split()) for p in rendered.split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def draft(decision: Decision, now: datetime) -> Reply | None:
    """The reply to the review behind `decision`, or None for any other incident."""
    incident = decision.incident
    if incident.type is not IncidentType.negative_review:
        return None
    locale = resolve_locale(incident.customer.locale)
    remedies = done_remedies(decision)
    text = render_reply(locale, rating=incident.rating or 1, remedies=remedies,
                        cause_fixed=incident.cause_fixed)
    return Reply(reply_id=reply_id(decision.decision_id), decision_id=decision.decision_id,
                 incident_id=incident.incident_id, customer_id=incident.customer.id,
                 tenant=incident.tenant, locale=locale,
                 platform=incident.review_platform or "", review_url=incident.review_url or "",
                 rating=incident.rating or 1, review_posted_at=incident.occurred_at,
                 drafted_at=now, draft=text, remedies=remedies)
