"""The customer's page of one decision, as HTML (ADR 0011): what happened and the apology,
what they get and how it stands, an offer's options as one button each, and after the remedy
a rating and a "tell us more" field. Opened by the signed link every message carries; forms
post here and redirect back to the page (no JavaScript).

Fulfilment serves it because it holds what the customer got (voucher codes, points, refund
states). The offer is decision's: a choice made here is handed to decision's
`POST /v1/customer/decisions/{id}/choice` with the customer's own token, so decision checks the
link itself; the page then shows the choice once its revision reaches fulfilment. A rating
is published as an upstream `remedy.rated` event for the learning loop.
"""

# ruff: noqa: RUF001 - Russian words are written in Cyrillic on purpose

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode

import httpx
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import escape
from prometheus_client import CollectorRegistry, Counter

from schemas.common import Contact, deterministic_id
from schemas.decision import Decision, RemedyKind
from schemas.upstream import RemedyRated, RemedyRatedEvent
from services.common.access import AccessDeniedError
from services.common.links import CustomerGrant, CustomerLinks
from services.common.messaging import Publisher, outgoing
from services.common.web import Web, resolve_locale
from services.fulfilment.messages import format_date, page_words

log = logging.getLogger(__name__)

COMMENT_MAX_CHARS = 2000
FORM_MAX_BYTES = 16_384
Notice = Literal["chosen", "settled", "unavailable", "rated", "empty"]
NOTICES: tuple[str, ...] = ("chosen", "settled", "unavailable", "rated", "empty")

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "yours": "What you get", "nothing_yet": "Nothing else is due for this yet.",
        "state_done": "Done", "state_under_way": "On its way",
        "state_failed": "Held up: our team is on it",
        "state_awaiting_review": "Being checked by our team",
        "voucher_code": "Your code", "voucher_active": "ready to use",
        "voucher_redeemed": "already used", "voucher_expired": "expired",
        "choose": "Choose what suits you", "choose_help":
            "Pick one. If we do not hear from you by {deadline}, you get {default}.",
        "suggested": "our suggestion", "choose_button": "Choose: {option}",
        "chosen_by_customer": "You chose {option}.",
        "chosen_by_support": "Our team recorded your choice: {option}.",
        "chosen_by_default": "We did not hear from you by {deadline}, so you get the option "
                             "we suggested: {option}.",
        "deadline_passed": "The time to choose ended on {deadline}: you get the option we "
                           "suggested, {option}.",
        "notice_chosen": "Thank you: your choice is recorded. We will confirm it by message.",
        "pending_choice": "What you chose shows here in a minute: reload this page to see it.",
        "notice_settled": "This offer was already settled, so nothing changed.",
        "notice_unavailable": "We could not record your choice just now. Please try again "
                              "in a few minutes.",
        "notice_rated": "Thank you for telling us. It helps us do better.",
        "notice_empty": "Please choose a rating or write a few words before sending.",
        "feedback": "How did we do?", "rating": "How satisfied are you with how we put "
        "this right?", "rating_1": "1, not at all", "rating_2": "2", "rating_3": "3",
        "rating_4": "4", "rating_5": "5, fully", "comment": "Tell us more (optional)",
        "send": "Send", "link_until": "This page's link works until {date}.",
    },
    "ru": {
        "yours": "Что вы получаете", "nothing_yet": "Больше ничего не ожидается.",
        "state_done": "Готово", "state_under_way": "В процессе",
        "state_failed": "Задерживается: мы уже разбираемся",
        "state_awaiting_review": "Проверяется нашей командой",
        "voucher_code": "Ваш код", "voucher_active": "можно использовать",
        "voucher_redeemed": "уже использован", "voucher_expired": "срок истёк",
        "choose": "Выберите, что вам удобнее", "choose_help":
            "Выберите один вариант. Если мы не получим ответа до {deadline}, вы получите: "
            "{default}.",
        "suggested": "наше предложение", "choose_button": "Выбрать: {option}",
        "chosen_by_customer": "Вы выбрали: {option}.",
        "chosen_by_support": "Наша команда записала ваш выбор: {option}.",
        "chosen_by_default": "Мы не получили ответа до {deadline}, поэтому вы получаете "
                             "предложенный вариант: {option}.",
        "deadline_passed": "Время выбора закончилось {deadline}: вы получаете предложенный "
                           "вариант: {option}.",
        "notice_chosen": "Спасибо: ваш выбор записан. Мы подтвердим его письмом.",
        "pending_choice": "Ваш выбор появится здесь через минуту: обновите страницу, чтобы "
                          "его увидеть.",
        "notice_settled": "Это предложение уже было решено, ничего не изменилось.",
        "notice_unavailable": "Сейчас не удалось записать ваш выбор. Попробуйте через "
                              "несколько минут.",
        "notice_rated": "Спасибо за отзыв. Он помогает нам становиться лучше.",
        "notice_empty": "Выберите оценку или напишите пару слов перед отправкой.",
        "feedback": "Как мы справились?", "rating": "Насколько вы довольны тем, как мы это "
        "исправили?", "rating_1": "1, совсем нет", "rating_2": "2", "rating_3": "3",
        "rating_4": "4", "rating_5": "5, полностью", "comment": "Расскажите подробнее "
        "(необязательно)", "send": "Отправить",
        "link_until": "Ссылка на эту страницу действует до {date}.",
    },
    "ro": {
        "yours": "Ce primiți", "nothing_yet": "Nu mai urmează nimic altceva.",
        "state_done": "Gata", "state_under_way": "În curs",
        "state_failed": "Întârziat: echipa noastră se ocupă",
        "state_awaiting_review": "Verificat de echipa noastră",
        "voucher_code": "Codul dumneavoastră", "voucher_active": "gata de folosit",
        "voucher_redeemed": "folosit deja", "voucher_expired": "expirat",
        "choose": "Alegeți ce vi se potrivește", "choose_help":
            "Alegeți una. Dacă nu primim răspuns până la {deadline}, primiți {default}.",
        "suggested": "sugestia noastră", "choose_button": "Aleg: {option}",
        "chosen_by_customer": "Ați ales {option}.",
        "chosen_by_support": "Echipa noastră a înregistrat alegerea dumneavoastră: {option}.",
        "chosen_by_default": "Nu am primit răspuns până la {deadline}, așa că primiți "
                             "varianta sugerată: {option}.",
        "deadline_passed": "Timpul de ales s-a încheiat la {deadline}: primiți varianta "
                           "sugerată, {option}.",
        "notice_chosen": "Vă mulțumim: alegerea dumneavoastră este înregistrată. O "
                         "confirmăm printr-un mesaj.",
        "pending_choice": "Alegerea dumneavoastră apare aici într-un minut: reîncărcați "
                          "pagina pentru a o vedea.",
        "notice_settled": "Această ofertă a fost deja stabilită, nu s-a schimbat nimic.",
        "notice_unavailable": "Nu am putut înregistra alegerea acum. Încercați din nou în "
                              "câteva minute.",
        "notice_rated": "Vă mulțumim. Ne ajută să facem mai bine.",
        "notice_empty": "Alegeți o notă sau scrieți câteva cuvinte înainte de a trimite.",
        "feedback": "Cum ne-am descurcat?", "rating": "Cât de mulțumit sunteți de felul în "
        "care am reparat lucrurile?", "rating_1": "1, deloc", "rating_2": "2",
        "rating_3": "3", "rating_4": "4", "rating_5": "5, pe deplin",
        "comment": "Spuneți-ne mai multe (opțional)", "send": "Trimite",
        "link_until": "Linkul acestei pagini funcționează până la {date}.",
    },
}


class PageMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "amends_customer_page_requests",
            "The customer's page: views, choices and ratings, by how they ended",
            ["action", "outcome"], registry=registry)


@dataclass(frozen=True)
class ChoiceAnswer:
    """What decision said to a choice: recorded, already settled, or not reachable."""

    outcome: Literal["chosen", "settled", "unavailable"]


class DecisionClient:
    """Decision's customer-choice endpoint over HTTP; the customer's token goes along, so
    decision checks the link itself."""

    def __init__(self, base_url: str, timeout_s: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s,
                                         transport=transport)

    async def choose(self, decision_id: str, option: int, token: str) -> ChoiceAnswer:
        try:
            answer = await self._client.post(
                f"/v1/customer/decisions/{decision_id}/choice",
                json={"option": option}, headers={"X-Customer-Token": token})
        except httpx.HTTPError as exc:
            log.warning("decision did not take a customer's choice: %s", type(exc).__name__)
            return ChoiceAnswer("unavailable")
        if answer.status_code == 200:
            return ChoiceAnswer("chosen")
        if answer.status_code in {409, 410, 422}:
            return ChoiceAnswer("settled")
        log.warning("decision refused a customer's choice: HTTP %d", answer.status_code)
        return ChoiceAnswer("unavailable")

    async def aclose(self) -> None:
        await self._client.aclose()


Chooser = Callable[[str, int, str], Awaitable[ChoiceAnswer]]
Loader = Callable[[Decision, datetime, datetime], Awaitable[Any]]


def _refusal_status(exc: AccessDeniedError) -> int:
    return 410 if exc.check == "link_expired" else 403


def _visitor_locale(request: Request) -> str:
    """Before the link is checked we know nothing of the customer: their browser's language."""
    first = request.headers.get("accept-language", "").split(",", 1)[0].split(";", 1)[0]
    return resolve_locale(first.strip())


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (first value of each); nothing past FORM_MAX_BYTES."""
    body = (await request.body())[:FORM_MAX_BYTES]
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items() if v}


def page_url(decision_id: str, token: str, notice: str | None = None) -> str:
    query = {"token": token} | ({"notice": notice} if notice else {})
    return f"/v1/customer/decisions/{decision_id}?{urlencode(query)}"


@dataclass
class CustomerPages:
    """The HTML twin of the customer's page and its two forms."""

    web: Web
    links: CustomerLinks
    clock: Callable[[], datetime]
    newest: Callable[[str], Awaitable[Decision | None]]
    view: Loader
    choose: Chooser
    publisher: Publisher
    feedback_topic: str
    metrics: PageMetrics

    async def _opened(self, request: Request, decision_id: str, token: str | None
                      ) -> tuple[CustomerGrant, Decision] | HTMLResponse:
        """The link's grant and its decision, or the page that says why not."""
        locale = _visitor_locale(request)
        if not token:
            return self.web.refusal(403, locale=locale)
        try:
            grant = self.links.verify(token, decision_id, self.clock())
        except AccessDeniedError as exc:
            return self.web.refusal(_refusal_status(exc), locale=locale)
        decision = await self.newest(decision_id)
        if decision is None:
            return self.web.refusal(404, locale=locale)
        if decision.incident.customer.id != grant.customer_id:
            return self.web.refusal(403, locale=locale)
        return grant, decision

    async def show(self, request: Request, decision_id: str, token: str | None,
                   notice: str | None) -> HTMLResponse:
        opened = await self._opened(request, decision_id, token)
        if isinstance(opened, HTMLResponse):
            self.metrics.requests.labels("view", "refused").inc()
            return opened
        grant, decision = opened
        assert token is not None
        now = self.clock()
        view = await self.view(decision, now, grant.expires_at)
        self.metrics.requests.labels("view", "shown").inc()
        return self.render(decision, view, token, now,
                           notice if notice in NOTICES else None, grant.expires_at)

    def render(self, decision: Decision, view: Any, token: str, now: datetime,  # noqa: PLR0917
               notice: str | None, expires_at: datetime) -> HTMLResponse:
        said = page_words(decision)
        locale = said.locale
        # The words escaped first: the phrases put into them are markup already.
        words = {k: escape(v) for k, v in self.web.words[locale].items()}
        offer = decision.offer
        remedies = [{"text": said.remedies[key], "state": remedy.state,
                     "code": remedy.voucher_code, "voucher_status": remedy.voucher_status}
                    for key, remedy in _remedies_by_key(decision, view).items()
                    if key in said.remedies]
        open_offer = offer is not None and decision.choice is None
        context: dict[str, Any] = {
            "decision": decision, "said": said, "remedies": remedies, "token": token,
            "notice": notice, "action": f"/v1/customer/decisions/{decision.decision_id}",
            "open_offer": open_offer and now < offer.deadline if offer else False,
            "offer_lapsed": open_offer and offer is not None and now >= offer.deadline,
            "pending_choice": notice == "chosen" and open_offer,
            "link_until": words["link_until"].format(date=format_date(expires_at, locale)),
        }
        if offer is not None:
            deadline = format_date(offer.deadline, locale)
            default = said.options[offer.default_option]
            context |= {"options": said.options, "default_option": offer.default_option,
                        "choose_help": words["choose_help"].format(deadline=deadline,
                                                                   default=default),
                        "deadline_passed": words["deadline_passed"].format(
                            deadline=deadline, option=default)}
            if decision.choice is not None:
                picked = said.options[decision.choice.option]
                context["chosen_text"] = words[f"chosen_by_{decision.choice.by}"].format(
                    option=picked, deadline=deadline)
        # The rating comes after the remedy: once nothing is left to choose.
        context["ask_feedback"] = not open_offer
        return self.web.render("customer.html.j2", locale=locale,
                               tenant=decision.incident.tenant, **context)

    async def post_choice(self, request: Request, decision_id: str) -> Response:
        form = await _form(request)
        token = form.get("token")
        opened = await self._opened(request, decision_id, token)
        if isinstance(opened, HTMLResponse):
            self.metrics.requests.labels("choose", "refused").inc()
            return opened
        assert token is not None
        _, decision = opened
        option = form.get("option", "")
        offer = decision.offer
        if offer is None or not option.isdigit() or int(option) >= len(offer.options):
            self.metrics.requests.labels("choose", "invalid").inc()
            return RedirectResponse(page_url(decision_id, token), status_code=303)
        answer = await self.choose(decision_id, int(option), token)
        self.metrics.requests.labels("choose", answer.outcome).inc()
        return RedirectResponse(page_url(decision_id, token, answer.outcome), status_code=303)

    async def post_feedback(self, request: Request, decision_id: str) -> Response:
        form = await _form(request)
        token = form.get("token")
        opened = await self._opened(request, decision_id, token)
        if isinstance(opened, HTMLResponse):
            self.metrics.requests.labels("rate", "refused").inc()
            return opened
        assert token is not None
        _, decision = opened
        rating_text = form.get("rating", "")
        rating = int(rating_text) if rating_text in {"1", "2", "3", "4", "5"} else None
        comment = (form.get("comment") or "").strip()[:COMMENT_MAX_CHARS] or None
        if rating is None and comment is None:
            self.metrics.requests.labels("rate", "empty").inc()
            return RedirectResponse(page_url(decision_id, token, "empty"), status_code=303)
        await self.publisher.publish_all([outgoing(self.feedback_topic,
                                                   rated(decision, rating, comment,
                                                         self.clock()))])
        self.metrics.requests.labels("rate", "recorded").inc()
        return RedirectResponse(page_url(decision_id, token, "rated"), status_code=303)


def _remedies_by_key(decision: Decision, view: Any) -> dict[str, Any]:
    """The page view's remedies by their action's key (the view lists them in the order of
    the decision's non-apology actions)."""
    keys = [a.idempotency_key for a in sorted(decision.actions, key=lambda a: a.position)
            if a.kind is not RemedyKind.apology]
    return dict(zip(keys, view.remedies, strict=True))


def rated(decision: Decision, rating: int | None, comment: str | None,
          now: datetime) -> RemedyRatedEvent:
    """The upstream event of a rating. Its id is the decision's and what was said, so a form
    sent twice is one event and a changed mind is another (the learning loop takes the
    newest). The customer's snapshot goes without their contact details."""
    incident = decision.incident
    said = hashlib.sha256(f"{rating}\x1f{comment or ''}".encode()).hexdigest()
    customer = incident.customer.model_copy(update={"contact": Contact(
        preferred_channel=incident.customer.contact.preferred_channel)})
    return RemedyRatedEvent(
        id=deterministic_id("remedy.rated", decision.decision_id, said),
        source="amends/fulfilment/customer-page", type="remedy.rated", time=now,
        subject=incident.customer.id, tenant=incident.tenant,
        data=RemedyRated(decision_id=decision.decision_id, incident_id=incident.incident_id,
                         incident_type=incident.type.value, customer=customer, rated_at=now,
                         rating=rating, comment=comment, order_id=incident.order_id))


def words() -> Mapping[str, Mapping[str, str]]:
    return WORDS
