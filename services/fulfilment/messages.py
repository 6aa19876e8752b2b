"""Apology messages: one short template per incident type and locale, rendered from a decision.

The words live in `templates/<locale>/<incident_type>.txt.j2` (each with a `subject` block);
this module only prepares what they need — the remedies, money, numbers, dates and durations
formatted for the locale — and turns the rendered text into its HTML twin.

Every template is rendered with autoescaping on, plain text included: strings that come from
outside (a customer's name, an order id, a voucher code) are escaped wherever the text ends
up, even if a webhook receiver drops the "text" into a web page. The text variant keeps only
the dangerous characters (`<`, `>`, `&`) escaped, so "O'Brien" still reads as written.
"""

# ruff: noqa: RUF001 - Russian words are written in Cyrillic on purpose

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from schemas.common import Money, minor_exponent
from schemas.decision import Action, Decision, RemedyKind
from schemas.incident import Detection
from services.registry.incident_types import INCIDENT_TYPES

LOCALES = ("en", "ru", "ro")
DEFAULT_LOCALE = "en"
NAME_MAX_CHARS = 80
FACT_MAX_CHARS = 300  # a fact quoted from the incident (a review's platform or address)
URL_MAX_CHARS = 2000  # a page URL with its signed token is a few hundred characters

_NBSP = "\u00a0"


@dataclass(frozen=True, slots=True)
class MessageExtras:
    """What the decision does not carry: a name to greet, the codes of vouchers already
    issued (keyed by the voucher action's idempotency key; a code is shown only when given
    here), the signature, the customer's own page (a signed link where they see what they
    got and choose an offer's option; none when no link can be signed), the customer's time zone
    for dates, the moment the message is sent (an offer's time left counts from it; the
    decision's time when not given), and the state of each action that is not done yet
    (keyed by idempotency key: "pending" for a refund on its way)."""

    customer_name: str | None = field(default=None, repr=False)
    voucher_codes: Mapping[str, str] = field(default_factory=dict, repr=False)
    signature: str | None = None
    page_url: str | None = field(default=None, repr=False)  # carries a bearer token
    status_url: str | None = None  # the public status post of the customer's outage
    timezone: tzinfo = UTC
    now: datetime | None = None
    states: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    text: str
    html: str
    locale: str


@dataclass(frozen=True, slots=True)
class Remedy:
    """One remedy as the templates name it, its numbers already formatted for the locale."""

    kind: str
    amount: str | None = None
    percent: str | None = None
    points: int | None = None
    quantity: int | None = None
    until: str | None = None
    within: str | None = None
    code: str | None = None
    state: str | None = None  # "pending": under way (a refund), else done


@dataclass(frozen=True, slots=True)
class OfferView:
    options: list[list[Remedy]]
    default: list[Remedy]
    within: str | None
    until: str | None = None


def resolve_locale(locale: str | None) -> str:
    """The template locale for a customer's locale ("ru-MD" → "ru"); English if we have none."""
    language = (locale or "").split("-", 1)[0].split("_", 1)[0].lower()
    return language if language in LOCALES else DEFAULT_LOCALE


# --- formatting: money, numbers, dates, durations, plurals per locale ----------------------

_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "RUB": "₽", "RON": "lei"}
_PREFIX_SYMBOLS = {"€", "$", "£"}  # written before the amount in English
_SEPARATORS = {"en": (",", "."), "ru": (_NBSP, ","), "ro": (".", ",")}  # thousands, decimal

_MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
    "ru": ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа",
           "сентября", "октября", "ноября", "декабря"),
    "ro": ("ianuarie", "februarie", "martie", "aprilie", "mai", "iunie", "iulie", "august",
           "septembrie", "octombrie", "noiembrie", "decembrie"),
}

# Unit words: (one, few, many) — Russian needs the accusative for "late by N" and the
# genitive for "within N"; English and Romanian use one form for both.
_UNITS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "en": {"for": {"minute": ("minute", "minutes"), "hour": ("hour", "hours"),
                   "day": ("day", "days")}},
    "ru": {"for": {"minute": ("минуту", "минуты", "минут"), "hour": ("час", "часа", "часов"),
                   "day": ("день", "дня", "дней")},
           "within": {"minute": ("минуты", "минут", "минут"),
                      "hour": ("часа", "часов", "часов"), "day": ("дня", "дней", "дней")}},
    "ro": {"for": {"minute": ("minut", "minute", "de minute"), "hour": ("oră", "ore", "de ore"),
                   "day": ("zi", "zile", "de zile")}},
}


def _plural_index(n: int, locale: str) -> int:
    if locale == "ru":
        if n % 10 == 1 and n % 100 != 11:
            return 0
        return 1 if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14 else 2
    if locale == "ro":
        if n == 1:
            return 0
        return 1 if n == 0 or 1 <= n % 100 <= 19 else 2  # 20 and up take "de"
    return 0 if n == 1 else 1


def _group(digits: str, separator: str) -> str:
    return f"{int(digits):,}".replace(",", separator)


def format_number(value: int | Decimal, locale: str, places: int = 0) -> str:
    """A number with the locale's separators: 1,234.50 / 1 234,50 / 1.234,50."""
    thousands, decimal = _SEPARATORS[resolve_locale(locale)]
    quantum = Decimal(1).scaleb(-places)
    text = format(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP), "f")
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    grouped = _group(whole, thousands)
    return f"{sign}{grouped}{decimal}{fraction}" if fraction else f"{sign}{grouped}"


def format_money(money: Money, locale: str) -> str:
    """`Money` for a reader: €12.50 in English, 12,50 € in Russian and Romanian; the amount
    has the currency's minor-unit places (2 for EUR, 0 for JPY)."""
    locale = resolve_locale(locale)
    amount = format_number(money.amount, locale, minor_exponent(money.currency))
    symbol = _SYMBOLS.get(money.currency, money.currency)
    if locale == "en":
        return f"{symbol}{amount}" if symbol in _PREFIX_SYMBOLS else f"{amount} {money.currency}"
    return f"{amount}{_NBSP}{symbol}"


def format_percent(percent: Decimal, locale: str) -> str:
    locale = resolve_locale(locale)
    exponent = percent.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    number = format_number(percent, locale, places)
    return f"{number}{_NBSP}%" if locale == "ru" else f"{number}%"


def format_date(moment: datetime, locale: str, tz: tzinfo = UTC) -> str:
    locale = resolve_locale(locale)
    day = moment.astimezone(tz).date()
    month = _MONTHS[locale][day.month - 1]
    if locale == "ru":
        return f"{day.day}{_NBSP}{month} {day.year}{_NBSP}г."
    return f"{day.day} {month} {day.year}"


def count(n: int, locale: str, *forms: str) -> str:
    """`n` and the plural form that goes with it: forms are (one, other) in English and
    (one, few, many) in Russian and Romanian ("de" forms for 20 and up)."""
    locale = resolve_locale(locale)
    index = min(_plural_index(n, locale), len(forms) - 1)
    return f"{format_number(n, locale)}{_NBSP}{forms[index]}"


def format_duration(minutes: int, locale: str, *, within: bool = False) -> str:
    """A length of time in the unit a person would use: minutes below two hours, hours below
    two days, days beyond. A delay is rounded to the nearest unit; a time limit (`within`)
    is rounded down, so we never promise more time than there is."""
    locale = resolve_locale(locale)
    units = _UNITS[locale].get("within" if within else "for", _UNITS[locale]["for"])
    if minutes >= 2 * 24 * 60:
        unit, size = "day", 24 * 60
    elif minutes >= 2 * 60:
        unit, size = "hour", 60
    else:
        unit, size = "minute", 1
    n = minutes // size if within else int(
        (Decimal(minutes) / size).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return count(max(n, 1), locale, *units[unit])


@dataclass(frozen=True, slots=True)
class Formatter:
    """The formatting helpers bound to one locale, as templates call them (`fmt.count`)."""

    locale: str

    def count(self, n: int, *forms: str) -> str:
        return count(n, self.locale, *forms)

    def plural(self, n: int, *forms: str) -> str:
        return forms[min(_plural_index(n, self.locale), len(forms) - 1)]


# --- preparing a decision for the templates ------------------------------------------------

_WHITESPACE = re.compile(r"\s+")
# Directional marks, embeddings, overrides and isolates: they can reorder what a reader sees.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")


def clean(value: str | None, limit: int = NAME_MAX_CHARS) -> str | None:
    """An outside string fit to quote: no control characters or line breaks (which could
    start a paragraph of someone else's), no bidi controls, whitespace collapsed, length
    bounded."""
    if value is None:
        return None
    kept = "".join(" " if c in _BIDI_CONTROLS or unicodedata.category(c) in {"Cc", "Zl", "Zp"}
                   else c for c in value)
    text = _WHITESPACE.sub(" ", kept).strip()[:limit].strip()
    return text or None


def _minutes_between(start: datetime, end: datetime | None) -> int | None:
    if end is None:
        return None
    return max(0, math.floor((end - start).total_seconds() / 60))


def _remedy(action: Action, decision: Decision, locale: str, extras: MessageExtras) -> Remedy:
    within = _minutes_between(decision.decided_at, action.due_by)
    return Remedy(
        kind=action.kind.value,
        amount=format_money(action.amount, locale) if action.amount is not None else None,
        percent=format_percent(action.percent, locale) if action.percent is not None else None,
        points=action.points,
        quantity=action.quantity,
        until=(format_date(action.expires_at, locale, extras.timezone)
               if action.expires_at is not None else None),
        within=format_duration(within, locale, within=True) if within else None,
        code=clean(extras.voucher_codes.get(action.idempotency_key), 64)
        if action.kind is RemedyKind.voucher else None,
        state=extras.states.get(action.idempotency_key),
    )


def _remedies(actions: Sequence[Action], decision: Decision, locale: str,
              extras: MessageExtras) -> list[Remedy]:
    ordered = sorted(actions, key=lambda a: a.position)
    return [_remedy(a, decision, locale, extras) for a in ordered
            if a.kind is not RemedyKind.apology]


def _offer(decision: Decision, locale: str, extras: MessageExtras) -> OfferView | None:
    offer = decision.offer
    if offer is None or decision.choice is not None:
        return None
    options = [_remedies(option.actions, decision, locale, extras) for option in offer.options]
    if any(not option for option in options):
        return None  # an option that gives nothing cannot be named; the remedies still are
    # From when the customer reads it: an offer approved after review is sent days after it
    # was decided, with a deadline moved accordingly.
    minutes = _minutes_between(extras.now or decision.decided_at, offer.deadline)
    return OfferView(options=options, default=options[offer.default_option],
                     within=format_duration(minutes, locale, within=True) if minutes else None,
                     until=format_date(offer.deadline, locale, extras.timezone))


def _facts(decision: Decision, locale: str) -> dict[str, str | None]:
    incident = decision.incident

    def minutes(value: int | None) -> str | None:
        return format_duration(value, locale) if value else None

    facts = {
        "order": clean(incident.order_id, 64),
        "ticket": clean(incident.ticket_id, 64),
        "delay": minutes(incident.delay_minutes),
        "wait": minutes(incident.wait_minutes),
        "outage": minutes(incident.outage_minutes),
        "charged": (format_money(incident.charged_amount, locale)
                    if incident.charged_amount is not None else None),
    }
    # A type's other facts (its registry entry names them) are the incident's own fields,
    # made fit to quote: a new type's facts need no code here.
    for name in INCIDENT_TYPES[incident.type].template_facts:
        if name not in facts:
            facts[name] = _fact(getattr(incident, name), locale)
    return facts


def _fact(value: object, locale: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, Money):
        return format_money(value, locale)
    if isinstance(value, int | Decimal):
        return format_number(value, locale)
    return clean(str(value), FACT_MAX_CHARS)


def _truths(decision: Decision) -> dict[str, bool]:
    """What a message may claim: that the order has arrived (a proactive delay without a
    delivery time is one still on its way), that the cause is fixed (only when the incident
    says so), that this adds to what was given before (a top-up)."""
    incident = decision.incident
    return {
        "delivered": incident.delivered_at is not None
        or incident.detection is not Detection.proactive,
        "cause_fixed": incident.cause_fixed,
        "top_up": bool(decision.top_up_of),
    }


# --- rendering -----------------------------------------------------------------------------

@functools.cache
def environment() -> Environment:
    """The template environment, built on first use (not at import)."""
    return Environment(
        loader=PackageLoader("services.fulfilment", "templates"),
        autoescape=True,  # every template, .txt.j2 included: see the module's docstring
        undefined=StrictUndefined,
        auto_reload=False,  # package files: not checked on disk at every render
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def template_name(incident_type: str, locale: str) -> str:
    return f"{resolve_locale(locale)}/{incident_type}.txt.j2"


_SPACES = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n{3,}")
_SPACE_BEFORE_PUNCT = re.compile(r" +([,.;:!?)])")


_LINE_EDGES = re.compile(r"^[^\S\n]+|[^\S\n]+$", re.MULTILINE)


def _tidy(rendered: str) -> str:
    """Template whitespace into prose: single spaces, no space at a line's ends or before
    punctuation, one blank line between paragraphs (over the whole text at once: line by
    line, it was a fifth of the rendering)."""
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", "\n".join(rendered.splitlines())))
    return _BLANKS.sub("\n\n", _LINE_EDGES.sub("", text)).strip()


def _as_text(escaped: str) -> str:
    # Quotes are harmless outside markup attributes; `&` stays escaped, so an input that
    # spelled out an entity cannot turn into one here.
    return escaped.replace("&#39;", "'").replace("&#34;", '"')


def _linked(html: str, url: str | None) -> str:
    """The customer's page made a link in the HTML twin; no other URL is (one an outside
    string brought, in an order id say, stays text)."""
    if not url:
        return html
    shown = str(escape(url))
    return html.replace(shown, f'<a href="{shown}">{shown}</a>')


def _as_html(escaped: str, subject: str, locale: str) -> str:
    """The text's HTML twin; `escaped` was rendered with autoescaping, so it is safe markup."""
    parts: list[str] = []
    bullets: list[str] = []
    for line in [*escaped.splitlines(), ""]:
        if line.startswith("- "):
            bullets.append(f"<li>{line[2:]}</li>")
            continue
        if bullets:
            parts.append("<ul>" + "".join(bullets) + "</ul>")
            bullets = []
        if line:
            parts.append(f"<p>{line}</p>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="{locale}"><head><meta charset="utf-8">'
            f"<title>{subject}</title></head>\n<body>\n{body}\n</body></html>\n")


def render_apology(decision: Decision, locale: str | None = None,
                   extras: MessageExtras | None = None, *,
                   actions: Sequence[Action] | None = None) -> RenderedMessage:
    """The apology for `decision` in `locale` (the customer's locale when not given; English
    when we have no template in that language).

    It names each remedy of `actions` — by default the decision's actions; the service
    passes the ones that were carried out — and, while an offer waits for the customer's
    choice, its options and the default.
    """
    extras = extras or MessageExtras()
    chosen = resolve_locale(locale if locale is not None else decision.incident.customer.locale)
    template = environment().get_template(template_name(decision.incident.type.value, chosen))
    context: dict[str, Any] = {
        "fmt": Formatter(chosen),
        "name": clean(extras.customer_name),
        "signature": clean(extras.signature),
        "page_url": clean(extras.page_url, URL_MAX_CHARS),
        "status_url": clean(extras.status_url, URL_MAX_CHARS),
        "remedies": _remedies(decision.actions if actions is None else actions,
                              decision, chosen, extras),
        "offer": _offer(decision, chosen, extras),
        **_facts(decision, chosen),
        **_truths(decision),
    }
    escaped = _tidy(template.render(context))
    subject = _tidy("".join(template.blocks["subject"](template.new_context(context))))
    html = _linked(_as_html(escaped, subject, chosen), context["page_url"])
    return RenderedMessage(subject=_as_text(subject), text=_as_text(escaped),
                           html=_linked(html, context["status_url"]), locale=chosen)


FOLLOW_UP_TEMPLATE = "_followup.txt.j2"


def render_follow_up(decision: Decision, given: Sequence[Action], locale: str | None = None,
                     extras: MessageExtras | None = None, *,
                     released: bool = False) -> RenderedMessage:
    """The message after a revision — the customer's choice, the default after the deadline,
    or a reviewer's approval — saying what the customer now has: `given` (the remedies that
    revision brought and that were carried out or are under way), with voucher codes and
    the state of a refund (`extras.states`). `released`: the remedies an outage's abort
    window held back, after an apology that named none."""
    extras = extras or MessageExtras()
    chosen = resolve_locale(locale if locale is not None else decision.incident.customer.locale)
    template = environment().get_template(f"{chosen}/{FOLLOW_UP_TEMPLATE}")
    choice = decision.choice
    deadline = decision.offer.deadline if decision.offer is not None else None
    context: dict[str, Any] = {
        "fmt": Formatter(chosen),
        "name": clean(extras.customer_name),
        "signature": clean(extras.signature),
        "by": "outage" if released else choice.by if choice is not None else "review",
        "label": clean(choice.label) if choice is not None else None,
        "deadline": (format_date(deadline, chosen, extras.timezone)
                     if deadline is not None else None),
        "remedies": _remedies(given, decision, chosen, extras),
        "page_url": clean(extras.page_url, URL_MAX_CHARS),
        **_facts(decision, chosen),
    }

    def block(name: str) -> str:
        return _tidy("".join(template.blocks[name](template.new_context(context))))

    escaped, subject = block("body"), block("subject")
    return RenderedMessage(subject=_as_text(subject), text=_as_text(escaped),
                           html=_linked(_as_html(escaped, subject, chosen), context["page_url"]),
                           locale=chosen)


# --- the customer's page: the same words, as HTML fragments ------------------------------

@dataclass(frozen=True, slots=True)
class PageWords:
    """What the customer's page says in the messages' own words: the apology's subject and
    its "what happened" paragraph, and a phrase per remedy (autoescaped: safe markup)."""

    locale: str
    subject: Markup
    what: Markup
    remedies: dict[str, Markup]  # by action idempotency key
    options: list[Markup]  # an offer's options, "A and B" each


def page_words(decision: Decision, locale: str | None = None) -> PageWords:
    """The page's sentences for `decision`, in the customer's locale (see `render_apology`):
    each remedy named as the messages name it (a voucher's code the page shows apart)."""
    chosen = resolve_locale(locale if locale is not None else decision.incident.customer.locale)
    extras = MessageExtras()
    template = environment().get_template(template_name(decision.incident.type.value, chosen))
    context: dict[str, Any] = {
        "fmt": Formatter(chosen), "name": None, "signature": None, "page_url": None,
        "status_url": None, "remedies": [], "offer": None, **_facts(decision, chosen),
        **_truths(decision)}

    def block(name: str) -> Markup:
        # Rendered with autoescaping on: every outside string in it is escaped already.
        rendered = "".join(template.blocks[name](template.new_context(context)))
        return Markup(_tidy(rendered))  # noqa: S704

    module = environment().get_template(f"{chosen}/_remedies.txt.j2").make_module(
        {"fmt": context["fmt"]})
    remedy_macro, choices_macro = module.remedy, module.choices  # type: ignore[attr-defined]
    fmt = context["fmt"]
    # A macro of an autoescaping environment returns markup, its arguments escaped.
    remedies: dict[str, Markup] = {
        a.idempotency_key: remedy_macro(_remedy(a, decision, chosen, extras), fmt)
        for a in decision.actions if a.kind is not RemedyKind.apology}
    options: list[Markup] = [
        choices_macro([_remedies(o.actions, decision, chosen, extras)], fmt)
        for o in (decision.offer.options if decision.offer is not None else [])]
    return PageWords(locale=chosen, subject=block("subject"), what=block("what"),
                     remedies=remedies, options=options)
