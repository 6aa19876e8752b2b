"""The operations console (ADR 0011, 0016): server-rendered pages on decision's app for the
people who run Amends — the review queue, a customer's case, dead letters, today's budget and
outages — behind the operators' own credentials.

An operator signs in with what the API takes (an API key, or a JWT from the issuer); the
session is that credential, encrypted and signed in an HttpOnly, SameSite=Strict cookie that
expires, and every request authenticates it again, so a revoked key or a changed role takes
effect at once and the roles and tenants are the API's own. Every form carries a CSRF token
bound to the session. Decision hosts it because the review queue and the budget are its own;
a case is read from fulfilment's API with the operator's credential, as `amends case` does, and
dead letters from the dead-letter topic, as `amends dlq` does.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations as objects.

import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

import httpx
from cryptography.fernet import Fernet, InvalidToken
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry, Counter

from amends import ops
from amends.adapters.redrives import Redrives
from schemas.audit import AuditAction
from schemas.common import Money
from schemas.decision import Decision, DecisionStatus
from schemas.outage import OutageCostPreview
from services.common.access import (
    EVERY_TENANT,
    AccessDeniedError,
    Authenticator,
    Principal,
    Role,
)
from services.common.messaging import kafka_client_options
from services.common.web import Brand, Web
from services.decision.domain.lifecycle import DecisionRefusedError
from services.decision.service import DecisionNotFoundError, DecisionService
from services.decision.settings import DecisionSettings

log = logging.getLogger(__name__)

PREFIX = "/console"
SESSION_COOKIE = "amends_console"
LOGIN_COOKIE = "amends_console_login"
FORM_MAX_BYTES = 16_384
HISTORY_DAYS = 90  # the customer's recent history shown beside a held decision
OUTAGE_WINDOW = timedelta(hours=24)

# What a POST-redirect-GET says on the page it lands on (fixed texts: nothing from the URL is
# shown as it is).
NOTICES = {
    "approved": "Approved: its remedies go out.",
    "approval_recorded": "Your approval is recorded; it needs another reviewer's too "
                         "(four eyes).",
    "rejected": "Rejected: only the apology goes out.",
    "redriven": "Sent back to its original topic.",
    "redrive_refused": "Not sent back: see the reason on the dead letter.",
    "signed_out": "You are signed out.",
}


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "amends_console_requests", "The operations console: pages and actions, by how "
            "they ended", ["page", "outcome"], registry=registry)


class Sessions:
    """The session cookie: the operator's credential, encrypted and signed (Fernet) with the
    time it was issued, so it is unreadable, unforgeable and expires; and the CSRF token of a
    session, an HMAC of its cookie under a key of its own."""

    def __init__(self, secret: bytes, ttl: timedelta) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(
            hashlib.sha256(b"amends-console-session\x00" + secret).digest()))
        self._csrf_key = hashlib.sha256(b"amends-console-csrf\x00" + secret).digest()
        self.ttl = ttl

    def seal(self, credential: str, now: datetime) -> str:
        return self._fernet.encrypt_at_time(credential.encode(), int(now.timestamp())).decode()

    def open(self, cookie: str | None, now: datetime) -> str | None:
        """The credential of a cookie this console sealed less than `ttl` ago; else None."""
        if not cookie:
            return None
        try:
            return self._fernet.decrypt_at_time(
                cookie.encode(), int(self.ttl.total_seconds()), int(now.timestamp())).decode()
        except (InvalidToken, ValueError):
            return None

    def csrf(self, bound_to: str) -> str:
        return hmac.new(self._csrf_key, bound_to.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, bound_to: str | None, given: str | None) -> bool:
        return bool(bound_to and given) and hmac.compare_digest(
            self.csrf(bound_to or ""), given or "")


@dataclass(frozen=True)
class Signed:
    """A signed-in operator on one request."""

    principal: Principal
    csrf: str


class Refused(Exception):  # noqa: N818 - an answer (a page), not a failure
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body())[:FORM_MAX_BYTES]
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items() if v}


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _when(moment: datetime | str | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


class FulfilmentCases:
    """Fulfilment's case API, called with the operator's own credential (so fulfilment scopes
    it to their tenants, as for `amends case`)."""

    def __init__(self, base_url: str, timeout_s: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s,
                                         transport=transport)

    async def case(self, customer_id: str, credential: str) -> dict[str, Any]:
        try:
            answer = await self._client.get(
                f"/v1/customers/{quote(customer_id, safe='')}/case",
                headers={"Authorization": f"Bearer {credential}"})
        except httpx.HTTPError as exc:
            raise Refused(502, "Fulfilment did not answer",
                          f"the case could not be read: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise Refused(502 if answer.status_code >= 500 else answer.status_code,
                          "Fulfilment refused", f"the case could not be read: HTTP "
                          f"{answer.status_code}")
        found: dict[str, Any] = answer.json()
        return found

    async def aclose(self) -> None:
        await self._client.aclose()


Letters = Callable[[], Awaitable[list[ops.Letter]]]


@dataclass
class DeadLetterDesk:
    """Dead letters as `amends dlq` sees them: read from the topic, redriven by republishing,
    each redrive recorded in the operators' store and on the audit trail."""

    settings: DecisionSettings

    @property
    def kafka(self) -> ops.Kafka:
        return ops.Kafka(self.settings.kafka_bootstrap, kafka_client_options(self.settings))

    @property
    def redrives(self) -> Redrives:
        return Redrives(self.settings.mongo_url, self.settings.ops_db)

    async def letters(self) -> list[ops.Letter]:
        return await ops.read_dead_letters(self.kafka, self.settings.deadletter_topic)

    async def redriven(self) -> set[str]:
        return await self.redrives.redriven()

    async def redrive(self, letter: ops.Letter, now: datetime) -> ops.RedriveSummary:
        summary = await ops.redrive(self.kafka, [letter])
        if summary.redriven:
            await self.redrives.record([letter.letter.dead_letter_id], now)
        return summary


class Console:
    """The console's routes over decision's service, the authenticator and its helpers."""

    def __init__(self, *, service: DecisionService, access: Authenticator, web: Web,
                 sessions: Sessions, cases: FulfilmentCases, desk: DeadLetterDesk,
                 metrics: ConsoleMetrics) -> None:
        self.service, self.access, self.web = service, access, web
        self.sessions, self.cases, self.desk, self.metrics = sessions, cases, desk, metrics

    # --- sessions --------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.service.clock()

    async def signed(self, request: Request, role: Role = Role.viewer) -> Signed:
        """The operator of this request's session, holding `role`; else a redirect to the
        sign-in page (raised as `_SignIn`) or a refusal page."""
        cookie = request.cookies.get(SESSION_COOKIE)
        credential = self.sessions.open(cookie, self._now())
        if credential is None or cookie is None:
            raise _SignIn
        try:
            principal = await self.access.authenticate(
                {"authorization": f"Bearer {credential}"},
                request.client.host if request.client else None)
        except AccessDeniedError:
            raise _SignIn from None  # revoked, or a JWT that expired: sign in again
        if not principal.has(role):
            held = principal.role.name if principal.role else "none"
            raise Refused(403, "Not allowed", f"This needs the role {role.name} or higher; "
                          f"{principal.subject} has {held}.")
        return Signed(principal, self.sessions.csrf(cookie))

    async def posted(self, request: Request, role: Role) -> tuple[Signed, dict[str, str]]:
        """A form posted by a signed-in operator holding `role`, its CSRF token checked."""
        me = await self.signed(request, role)
        form = await _form(request)
        if not self.sessions.csrf_ok(request.cookies.get(SESSION_COOKIE), form.get("csrf")):
            raise Refused(403, "Form refused", "The form's security token does not match "
                          "your session. Reload the page and try again.")
        return me, form

    def page(self, template: str, me: Signed | None, *, status: int = 200,
             **context: Any) -> HTMLResponse:
        return self.web.render(template, locale="en", status=status, me=me,
                               principal=me.principal if me else None,
                               notices=NOTICES, **context)

    def refused(self, exc: Refused, me: Signed | None = None) -> HTMLResponse:
        return self.page("console_refused.html.j2", me, status=exc.status, title=exc.title,
                         detail=exc.detail)

    async def guarded(self, name: str, request: Request,
                      run: Callable[[], Awaitable[Response]]) -> Response:
        """A page's answer, or the sign-in when there is no session, or the refusal (with the
        navigation when the session itself is good); every outcome counted for `name`."""
        requests = self.metrics.requests
        try:
            answer = await run()
        except _SignIn:
            requests.labels(name, "sign_in").inc()
            return _see(f"{PREFIX}/login")
        except Refused as exc:
            requests.labels(name, "refused").inc()
            me = None
            with contextlib.suppress(_SignIn, Refused):
                me = await self.signed(request)
            return self.refused(exc, me)
        requests.labels(name, "shown" if request.method == "GET" else "done").inc()
        return answer

    # --- the pages -------------------------------------------------------------------------

    async def review_queue(self, me: Signed, notice: str | None) -> HTMLResponse:
        held = await self.service.store.held(100, self.access.tenants(me.principal))
        since = self._now() - timedelta(days=HISTORY_DAYS)
        customers = sorted({d.incident.customer.id for d in held})
        histories = (await self.service.store.histories(customers, since)
                     if customers else {})
        def others(d: Decision) -> list[Any]:
            found = histories.get(d.incident.customer.id)
            return [p for p in (found.incidents if found else ())
                    if p.incident_id != d.incident.incident_id]

        items = [{"decision": d, "needed": self.service.approvals_needed(d),
                  "approved_by_me": any(a.reviewer == me.principal.subject
                                        for a in d.approvals),
                  "history": others(d)} for d in held]
        return self.page("console_review.html.j2", me, items=items, notice=notice,
                         can_review=me.principal.has(Role.reviewer))

    async def verdict(self, me: Signed, decision_id: str, verdict: str,
                      reason: str) -> Response:
        reason = reason.strip()
        if not reason:
            raise Refused(422, "A reason is needed", "Say why, for the record, and send the "
                          "verdict again.")
        try:
            decision = await self.service.current(decision_id)
        except DecisionNotFoundError:
            raise Refused(404, "No such decision", f"No decision {decision_id}.") from None
        try:
            self.access.require_tenant(me.principal, decision.incident.tenant)
        except AccessDeniedError as exc:
            raise Refused(403, "Not allowed", exc.detail) from None
        try:
            after = await self.service.review(
                decision_id, "approved" if verdict == "approve" else "rejected",
                me.principal, reason[:1000], loaded=decision)
        except DecisionRefusedError as exc:
            raise Refused(exc.status, "The verdict was refused", exc.detail) from None
        notice = ("rejected" if verdict == "reject" else
                  "approval_recorded" if after.status is DecisionStatus.held else "approved")
        return _see(f"{PREFIX}/review", notice=notice)

    async def case(self, me: Signed, credential: str, customer: str | None,
                   order: str | None) -> HTMLResponse:
        customer, order = (customer or "").strip() or None, (order or "").strip() or None
        cases: list[dict[str, Any]] = []
        if customer or order:
            ids = [customer] if customer else await self.service.store.customers_of_order(
                order or "", self.access.tenants(me.principal))
            for customer_id in ids:
                data = await self.cases.case(customer_id, credential)
                cases.append({"customer_id": customer_id, "data": data,
                              "timeline": timeline(data, order)})
        return self.page("console_case.html.j2", me, customer=customer or "",
                         order=order or "", cases=cases, searched=bool(customer or order))

    async def dead_letters(self, me: Signed, service: str | None, reason: str | None,
                           notice: str | None) -> HTMLResponse:
        _every_tenant(me.principal)
        letters = await self.desk.letters()
        redriven = await self.desk.redriven()
        counts = Tally((i.letter.service, i.letter.reason.value) for i in letters)
        chosen = [i for i in letters if (not service or i.letter.service == service)
                  and (not reason or i.letter.reason.value == reason)]
        return self.page("console_dead_letters.html.j2", me, counts=sorted(counts.items()),
                         letters=chosen[::-1][:200], total=len(chosen), redriven=redriven,
                         service=service or "", reason=reason or "", notice=notice)

    async def dead_letter(self, me: Signed, letter_id: str, refusal: str | None = None,
                          status: int = 200) -> HTMLResponse:
        _every_tenant(me.principal)
        found = await self._letter(letter_id)
        return self.page("console_dead_letter.html.j2", me, status=status, item=found,
                         letter=found.letter, redriven=letter_id in await self.desk.redriven(),
                         payload=found.original.decode(errors="replace"),
                         headers=[(k, v.decode(errors="replace")) for k, v in found.headers],
                         can_redrive=me.principal.has(Role.admin), refusal=refusal)

    async def _letter(self, letter_id: str) -> ops.Letter:
        found = next((i for i in await self.desk.letters()
                      if i.letter.dead_letter_id == letter_id), None)
        if found is None:
            raise Refused(404, "No such dead letter", f"No dead letter {letter_id} on "
                          f"{self.desk.settings.deadletter_topic}.")
        return found

    async def redrive(self, me: Signed, letter_id: str, why: str) -> Response:
        _every_tenant(me.principal)
        found = await self._letter(letter_id)
        summary = await self.desk.redrive(found, self._now())
        if self.service.audit is not None:
            await self.service.audit.record(
                me.principal, AuditAction.redrive,
                f"{self.desk.settings.deadletter_topic}: {letter_id}", reason=why[:1000],
                before={"selected": 1}, after={"redriven": len(summary.redriven),
                                                "refused": len(summary.refused)})
        if summary.refused:
            self.metrics.requests.labels("redrive", "refused").inc()
            return await self.dead_letter(me, letter_id, summary.refused[0].reason, 409)
        self.metrics.requests.labels("redrive", "done").inc()
        return _see(f"{PREFIX}/dead-letters", notice="redriven")

    async def budget(self, me: Signed) -> HTMLResponse:
        _every_tenant(me.principal, "the budget is shared by every tenant")
        now = self._now()
        day = now.date()
        state = await self.service.budget.state(day, self.service.limit)
        currency = state.limit.currency
        moves = await self.service.budget.movements(day, currency)
        start = datetime.combine(day, time(0), tzinfo=now.tzinfo)
        today = await self.service.store.between(start, None)
        return self.page("console_budget.html.j2", me, day=day.isoformat(),
                         **budget_view(state.limit, state.spent, moves, today, now))

    async def outages(self, me: Signed) -> HTMLResponse:
        now = self._now()
        tenants = self.access.tenants(me.principal)
        recent = [d for d in await self.service.store.between(now - OUTAGE_WINDOW, None)
                  if tenants is None or d.incident.tenant in tenants]
        rows = outage_rows(recent)
        previews = [p for p in [await self.service.outage_preview(r["outage_id"])
                                for r in rows] if p is not None]
        return self.page("console_outages.html.j2", me, outages=rows,
                         previews=[preview_row(p) for p in previews],
                         hours=int(OUTAGE_WINDOW.total_seconds() // 3600))


class _SignIn(Exception):  # noqa: N818 - a redirect, not a failure
    pass


def _see(path: str, **query: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode(query)}" if query else path, status_code=303)


def _every_tenant(principal: Principal, why: str = "topics hold every tenant's records"
                  ) -> None:
    if principal.tenant != EVERY_TENANT:
        raise Refused(403, "Not allowed", f"This page needs an operator of every tenant: "
                      f"{why}. {principal.subject} acts for tenant {principal.tenant}.")


def timeline(case: dict[str, Any], order: str | None = None) -> list[dict[str, str]]:
    """A case's incidents, decisions, effects and messages as one list, oldest first; with
    `order`, only what belongs to that order's incidents."""
    incidents = [i for i in case.get("incidents", [])
                 if order is None or i.get("order_id") == order]
    kept = {i["incident_id"] for i in incidents}
    decisions = [d for d in case.get("decisions", [])
                 if order is None or d.get("decision_id") in _decisions_of(case, kept)]
    decision_ids = {d["decision_id"] for d in decisions}
    rows: list[dict[str, str]] = [
        {"at": i.get("occurred_at") or "", "what": "incident",
         "title": f"{i['type']} ({i.get('detection', '-')})",
         "detail": i.get("summary") or "", "ref": i["incident_id"]} for i in incidents]
    for d in decisions:
        value = d.get("total_value") or {}
        rows.append({"at": d.get("decided_at") or "", "what": "decision",
                     "title": f"{d['status']}, worth {value.get('amount', '?')} "
                              f"{value.get('currency', '')}",
                     "detail": d.get("explanation") or "", "ref": d["decision_id"]})
    for a in case.get("actions", []):
        if a.get("decision_id") not in decision_ids:
            continue
        value = a.get("value") or {}
        rows.append({"at": a.get("completed_at") or "", "what": "effect",
                     "title": f"{a['kind']} {a['status']} ({value.get('amount', '?')} "
                              f"{value.get('currency', '')})",
                     "detail": a.get("detail") or "", "ref": a["idempotency_key"]})
    for m in case.get("messages", []):
        if m.get("decision_id") not in decision_ids:
            continue
        rows.append({"at": m.get("sent_at") or m.get("created_at") or "", "what": "message",
                     "title": f"{m.get('channel', '-')} ({m.get('locale', '-')}): "
                              f"{m.get('subject') or m.get('kind', '')}",
                     "detail": m.get("status") or "", "ref": m["idempotency_key"]})
    return sorted(rows, key=lambda r: (r["at"], r["what"]))


def _decisions_of(case: dict[str, Any], incident_ids: set[str]) -> set[str]:
    """The decisions of these incidents (the case lists incidents and decisions in step)."""
    return {d["decision_id"] for d, i in zip(case.get("decisions", []),
                                             case.get("incidents", []), strict=False)
            if i.get("incident_id") in incident_ids}


def budget_view(limit: Money, spent: Money, moves: Sequence[Any],
                today: Sequence[Decision], now: datetime) -> dict[str, Any]:
    """Today's budget as the page shows it: the day's figures, restitution apart (it never
    touches the budget), and the burn hour by hour."""
    currency = limit.currency
    reserved = sum((m.amount.amount for m in moves if m.amount.amount > 0), Decimal(0))
    released = -sum((m.amount.amount for m in moves if m.amount.amount < 0), Decimal(0))
    restitution = sum((d.restitution_value.amount for d in today
                       if d.restitution_value is not None
                       and d.restitution_value.currency == currency
                       and d.status is not DecisionStatus.rejected), Decimal(0))
    hours: list[dict[str, Any]] = []
    running = Decimal(0)
    for hour in range(now.hour + 1):
        taken = sum((m.amount.amount for m in moves if m.at.hour == hour
                     and m.amount.amount > 0), Decimal(0))
        given = -sum((m.amount.amount for m in moves if m.at.hour == hour
                      and m.amount.amount < 0), Decimal(0))
        running += taken - given
        hours.append({"hour": f"{hour:02d}:00", "reserved": _money(taken, currency),
                      "released": _money(given, currency), "spent": _money(running, currency),
                      "value": max(running, Decimal(0)), "empty": not (taken or given)})
    return {"currency": currency, "limit": _money(limit.amount, currency),
            "limit_value": limit.amount, "reserved": _money(reserved, currency),
            "released": _money(released, currency), "spent": _money(spent.amount, currency),
            "spent_value": max(spent.amount, Decimal(0)),
            "remaining": _money(limit.amount - spent.amount, currency),
            "restitution": _money(restitution, currency),
            "hours": [h for h in hours if not h["empty"]] or hours[-1:]}


def outage_rows(recent: Sequence[Decision]) -> list[dict[str, Any]]:
    """Decisions of the same outage together: how many customers it reached and what their
    decisions may cost so far, newest outage first."""
    by_outage: dict[str, list[Decision]] = {}
    for d in recent:
        if d.incident.outage_id:
            by_outage.setdefault(d.incident.outage_id, []).append(d)
    rows = []
    for outage_id, decisions in by_outage.items():
        currency = decisions[0].total_value.currency
        cost = sum((d.total_value.amount for d in decisions
                    if d.total_value.currency == currency
                    and d.status is not DecisionStatus.rejected), Decimal(0))
        rows.append({"outage_id": outage_id, "affected": len({d.incident.customer.id
                                                              for d in decisions}),
                     "cost": _money(cost, currency), "held": sum(
                         d.status is DecisionStatus.held for d in decisions),
                     "first": _when(min(d.decided_at for d in decisions)),
                     "last_at": max(d.decided_at for d in decisions),
                     "last": _when(max(d.decided_at for d in decisions))})
    return sorted(rows, key=lambda r: r["last_at"], reverse=True)


def preview_row(preview: OutageCostPreview) -> dict[str, Any]:
    """An outage's cost preview as the outages page shows it."""
    def money(m: Money) -> str:
        return _money(m.amount, m.currency)

    return {"outage_id": preview.outage_id, "affected": preview.affected_customers,
            "tiers": ", ".join(f"{t.value} {n}" for t, n in preview.tiers.items()),
            "remedies": ", ".join(f"{r.kind.value} to {r.customers} ({money(r.value)})"
                                  for r in preview.remedies),
            "full": money(preview.full_cost), "total": money(preview.total),
            "budget": money(preview.outage_budget),
            "scaled": f"yes ({preview.partial})" if preview.scaled else "no",
            "daily": f"{money(preview.daily_remaining)} of {money(preview.daily_budget)}",
            "at": _when(preview.previewed_at)}


def router(console: Console) -> APIRouter:  # noqa: PLR0915 - one route table
    api = APIRouter(prefix=PREFIX, include_in_schema=False)
    LetterId = Annotated[str, Path(min_length=1, max_length=200)]  # noqa: N806
    DecisionId = Annotated[str, Path(min_length=1, max_length=200)]  # noqa: N806
    Text = Annotated[str | None, Query(max_length=200)]  # noqa: N806
    metrics = console.metrics

    guarded = console.guarded

    @api.get("")
    async def home() -> Response:
        return _see(f"{PREFIX}/review")

    @api.get("/login")
    async def login_form(request: Request) -> Response:
        nonce = secrets.token_urlsafe(24)
        page = console.page("console_login.html.j2", None, csrf=console.sessions.csrf(
            f"login:{nonce}"), error=None, notice=request.query_params.get("notice"))
        _cookie(page, request, LOGIN_COOKIE, nonce, 600)
        return page

    @api.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        nonce = request.cookies.get(LOGIN_COOKIE)
        if not console.sessions.csrf_ok(f"login:{nonce}" if nonce else None,
                                        form.get("csrf")):
            metrics.requests.labels("login", "refused").inc()
            return _see(f"{PREFIX}/login")  # a fresh form with a fresh token
        credential = (form.get("key") or "").strip()
        try:
            principal = await console.access.authenticate(
                {"authorization": f"Bearer {credential}"},
                request.client.host if request.client else None)
        except AccessDeniedError:
            principal = None
        if principal is None or principal.role is None:
            metrics.requests.labels("login", "refused").inc()
            return console.page("console_login.html.j2", None, status=401,
                                csrf=console.sessions.csrf(f"login:{nonce}"), notice=None,
                                error="That key or token is not known, has expired or "
                                      "carries no role.")
        metrics.requests.labels("login", "done").inc()
        log.info("%s signed in to the console", principal.subject)
        done = _see(f"{PREFIX}/review")
        _cookie(done, request, SESSION_COOKIE,
                console.sessions.seal(credential, console.service.clock()),
                int(console.sessions.ttl.total_seconds()))
        done.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return done

    @api.post("/logout")
    async def logout(request: Request) -> Response:
        async def run() -> Response:
            await console.posted(request, Role.viewer)
            done = _see(f"{PREFIX}/login", notice="signed_out")
            done.delete_cookie(SESSION_COOKIE, path=PREFIX)
            return done
        return await guarded("logout", request, run)

    @api.get("/review")
    async def review(request: Request, notice: Text = None) -> Response:
        async def run() -> Response:
            return await console.review_queue(await console.signed(request), notice)
        return await guarded("review", request, run)

    @api.post("/review/{decision_id}/{verdict}")
    async def verdict(request: Request, decision_id: DecisionId,
                      verdict: Annotated[str, Path(pattern="^(approve|reject)$")]
                      ) -> Response:
        async def run() -> Response:
            me, form = await console.posted(request, Role.reviewer)
            return await console.verdict(me, decision_id, verdict, form.get("reason", ""))
        return await guarded(verdict, request, run)

    @api.get("/cases")
    async def cases(request: Request, customer: Text = None, order: Text = None) -> Response:
        async def run() -> Response:
            me = await console.signed(request)
            credential = console.sessions.open(request.cookies.get(SESSION_COOKIE),
                                               console.service.clock())
            assert credential is not None  # `signed` opened it
            return await console.case(me, credential, customer, order)
        return await guarded("cases", request, run)

    @api.get("/dead-letters")
    async def dead_letters(request: Request, service: Text = None, reason: Text = None,
                           notice: Text = None) -> Response:
        async def run() -> Response:
            return await console.dead_letters(await console.signed(request), service,
                                              reason, notice)
        return await guarded("dead_letters", request, run)

    @api.get("/dead-letters/{letter_id}")
    async def dead_letter(request: Request, letter_id: LetterId) -> Response:
        async def run() -> Response:
            # The payload holds the customer's contact details: support and above.
            return await console.dead_letter(await console.signed(request, Role.support),
                                             letter_id)
        return await guarded("dead_letter", request, run)

    @api.post("/dead-letters/{letter_id}/redrive")
    async def redrive(request: Request, letter_id: LetterId) -> Response:
        async def run() -> Response:
            me, form = await console.posted(request, Role.admin)
            return await console.redrive(me, letter_id, form.get("why", ""))
        return await guarded("redrive", request, run)

    @api.get("/budget")
    async def budget(request: Request) -> Response:
        async def run() -> Response:
            return await console.budget(await console.signed(request))
        return await guarded("budget", request, run)

    @api.get("/outages")
    async def outages(request: Request) -> Response:
        async def run() -> Response:
            return await console.outages(await console.signed(request))
        return await guarded("outages", request, run)

    return api


def _cookie(response: Response, request: Request, name: str, value: str,
            max_age: int) -> None:
    """A console cookie: never readable by script, never sent from another site, sent only
    over TLS when the console is served over TLS (it is plain HTTP on the local stack)."""
    response.set_cookie(name, value, max_age=max_age, path=PREFIX, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def create_console(service: DecisionService, access: Authenticator, settings: DecisionSettings,
                   registry: CollectorRegistry, *, brand: Brand,
                   cases: FulfilmentCases | None = None,
                   desk: DeadLetterDesk | None = None) -> tuple[Console, APIRouter, Web]:
    """The console and its routes; tests pass their own case reader and dead-letter desk."""
    key = settings.console_session_key
    if key is None:
        log.warning("no console_session_key: console sessions end when this process does")
    secret = key.get_secret_value().encode() if key else secrets.token_bytes(32)
    web = Web(brand, package="services.decision")
    console = Console(
        service=service, access=access, web=web,
        sessions=Sessions(secret, timedelta(hours=settings.console_session_hours)),
        cases=cases or FulfilmentCases(settings.fulfilment_url, settings.fulfilment_timeout_s),
        desk=desk or DeadLetterDesk(settings), metrics=ConsoleMetrics(registry))
    from services.decision import console_outage_window  # noqa: PLC0415 - it imports this module

    routes = router(console)
    routes.include_router(console_outage_window.router(console))
    return console, routes, web
