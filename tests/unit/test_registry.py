"""The registries lack nothing: every incident type and remedy kind has an entry with every
part, a message template in every locale and words in every locale's `remedy` macro. When
something is missing, the failure names it (type or kind, and part); the last tests prove that
by building registries with a part missing."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from jinja2 import DictLoader, Environment
from pydantic import ValidationError

from schemas.decision import RemedyKind
from schemas.incident import Incident, IncidentType
from schemas.upstream import UPSTREAM_EVENT_TYPES
from services.decision.domain.policy import CUTTABLE
from services.fulfilment.messages import LOCALES, Formatter, Remedy, environment
from services.fulfilment.service import EFFECT_HANDLERS
from services.intake.service import AFTER_PUBLISH, IntakeService, event_handlers, stateless
from services.intake.settings import IntakeSettings
from services.registry.incident_types import (
    INCIDENT_TYPES,
    IncidentEntry,
    Stateless,
    missing_incident_parts,
    thresholds_of,
    triggered_by,
)
from services.registry.remedy_kinds import REMEDY_KINDS, RemedyEntry, missing_remedy_parts

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 7, tzinfo=UTC)
TEMPLATES = Path("services/fulfilment/templates")
Render = Callable[[str, str], str]  # (locale, kind) -> the words of the `remedy` macro


def missing_templates(types: Iterable[IncidentType], locales: Iterable[str],
                      exists: Callable[[str], bool]) -> list[str]:
    return [f"incident type {kind.value}: no template {locale}/{kind.value}.txt.j2"
            for kind in types for locale in locales
            if not exists(f"{locale}/{kind.value}.txt.j2")]


def missing_wording(entries: Mapping[RemedyKind, RemedyEntry], locales: Iterable[str],
                    render: Render) -> list[str]:
    return [f"remedy kind {kind.value}: no words in {locale}/_remedies.txt.j2"
            for kind, entry in entries.items() if entry.macro_branch is not None
            for locale in locales if not render(locale, entry.macro_branch).strip()]


def rendered_by(env: Environment) -> Render:
    def render(locale: str, kind: str) -> str:
        macro = env.get_template(f"{locale}/_remedies.txt.j2").module.remedy  # type: ignore[attr-defined]
        return str(macro(Remedy(kind=kind), Formatter(locale)))

    return render


def problems(incidents: Mapping[IncidentType, IncidentEntry],
             remedies: Mapping[RemedyKind, RemedyEntry], locales: Iterable[str],
             exists: Callable[[str], bool], render: Render) -> list[str]:
    locales = list(locales)
    return (missing_incident_parts(incidents) + missing_remedy_parts(remedies)
            + missing_templates(incidents, locales, exists)
            + missing_wording(remedies, locales, render))


def test_the_registries_lack_nothing() -> None:
    assert problems(INCIDENT_TYPES, REMEDY_KINDS, LOCALES,
                    lambda name: (TEMPLATES / name).is_file(),
                    rendered_by(environment())) == []


def test_every_task_remedy_has_the_words_hours_and_priority_fulfilment_uses() -> None:
    tasks = {k: e.task for k, e in REMEDY_KINDS.items() if e.effect == "task"}
    assert set(tasks) == {RemedyKind.personal_call, RemedyKind.priority_support,
                          RemedyKind.free_upgrade, RemedyKind.replacement, RemedyKind.gift}
    assert all(task is not None and "{note}" in task.words for task in tasks.values())


def test_what_a_cap_cuts_is_the_default_cut_order() -> None:
    assert {k for k, e in REMEDY_KINDS.items() if e.cut != "never"} == set(CUTTABLE)
    assert {k for k, e in REMEDY_KINDS.items() if e.can_be_restitution} == {RemedyKind.refund}


def test_template_facts_are_facts_the_messages_have() -> None:
    # fulfilment's formatted facts, or a field of the incident quoted as it is
    known = {"delay", "wait", "outage", "charged", "ticket"} | set(Incident.model_fields)
    assert {f for e in INCIDENT_TYPES.values() for f in e.template_facts} <= known


def test_every_trigger_is_an_upstream_event_type() -> None:
    unknown = {f"{kind.value}: {trigger}" for kind, entry in INCIDENT_TYPES.items()
               for trigger in entry.triggers if trigger not in UPSTREAM_EVENT_TYPES}
    assert not unknown


def unhandled_events(event_types: Iterable[str],
                     incidents: Mapping[IncidentType, IncidentEntry],
                     intake: Iterable[str]) -> list[str]:
    """Upstream event types that make nothing: triggered by no entry, handled by no intake
    handler (an event intake keeps state from, such as `order.placed`, has one)."""
    handled = set(triggered_by(incidents)) | set(intake)
    return [f"upstream event {t}: no entry and no intake handler" for t in event_types
            if t not in handled]


def unhandled_effects(remedies: Mapping[RemedyKind, RemedyEntry],
                      handlers: Iterable[str]) -> list[str]:
    known = set(handlers)
    return [f"remedy kind {kind.value}: effect {entry.effect} has no fulfilment handler"
            for kind, entry in remedies.items() if entry.effect not in known]


def test_every_upstream_event_type_is_handled() -> None:
    # outage.resolved is a trigger of service_outage, handled after the batch's other
    # incidents are published (AFTER_PUBLISH), as outage.declared is.
    intake = set(event_handlers({})) | set(AFTER_PUBLISH)
    assert unhandled_events(UPSTREAM_EVENT_TYPES, INCIDENT_TYPES, intake) == []
    assert set(triggered_by(INCIDENT_TYPES)) <= intake


def test_every_effect_has_a_fulfilment_handler() -> None:
    assert unhandled_effects(REMEDY_KINDS, EFFECT_HANDLERS) == []


def test_an_unhandled_event_or_effect_is_named() -> None:
    incidents: dict[IncidentType, IncidentEntry] = {k: e for k, e in INCIDENT_TYPES.items()
                 if k is not IncidentType.support_wait_exceeded}
    intake = [t for t in event_handlers({}) if t != "support.ticket_updated"]
    assert unhandled_events(UPSTREAM_EVENT_TYPES, incidents, intake) == [
        "upstream event support.ticket_updated: no entry and no intake handler"]
    assert unhandled_effects(REMEDY_KINDS, EFFECT_HANDLERS - {"perk"}) == [
        "remedy kind free_delivery: effect perk has no fulfilment handler"]


def test_a_stateless_type_is_detected_without_intake_code_and_its_threshold_overridden(
        ) -> None:
    seen: list[tuple[object, dict[str, object]]] = []

    def detect(event: object, _now: object, limits: Mapping[str, object]) -> None:
        seen.append((event, dict(limits)))

    entry = dataclasses.replace(INCIDENT_TYPES[IncidentType.order_cancelled],
                                stateless=Stateless(detect, {"limit": 3, "other": 1}))
    assert thresholds_of(entry, {"order_cancelled.limit": 5, "x.limit": 9}) == {
        "limit": 5, "other": 1}
    # Two entries sharing one detector (as the item types do) run it once per event.
    handle = stateless([entry, entry], {"order_cancelled.limit": 5})
    found = asyncio.run(handle(cast("IntakeService", None), [(0, "event")], NOW))
    assert (found, seen) == ([], [("event", {"limit": 5, "other": 1})])


def test_an_unknown_threshold_is_refused_at_start_by_name() -> None:
    with pytest.raises(ValidationError, match=r"unknown thresholds nope\.max"):
        IntakeSettings(thresholds={"nope.max": 1})


def test_generated_weights_are_those_of_the_backtest() -> None:
    weights = {k.value: e.generated.weight for k, e in INCIDENT_TYPES.items()}
    assert weights == {"delivery_delayed": 45, "item_defective": 10, "wrong_item": 6,
                       "item_missing": 6, "order_cancelled": 5, "double_charge": 3,
                       "support_wait_exceeded": 15, "service_outage": 10,
                       "negative_review": 0}  # 0: never drawn unless asked; golden unchanged


# --- the failures name what is missing ---------------------------------------------------------


def _all_there(_name: str) -> bool:
    return True


def _words(_locale: str, _kind: str) -> str:
    return "words"


def test_a_missing_incident_entry_or_part_is_named() -> None:
    incidents = dict(INCIDENT_TYPES)
    del incidents[IncidentType.wrong_item]
    incidents[IncidentType.double_charge] = dataclasses.replace(
        incidents[IncidentType.double_charge], triggers=())
    incidents[IncidentType.service_outage] = dataclasses.replace(
        incidents[IncidentType.service_outage], harm=None)  # type: ignore[arg-type]
    assert problems(incidents, REMEDY_KINDS, ["en"], _all_there, _words) == [
        "incident type wrong_item: no entry",
        "incident type double_charge: no triggers",
        "incident type service_outage: no harm",
    ]


def test_a_missing_remedy_entry_or_part_is_named() -> None:
    remedies = dict(REMEDY_KINDS)
    del remedies[RemedyKind.gift]
    remedies[RemedyKind.personal_call] = dataclasses.replace(
        remedies[RemedyKind.personal_call], task=None)
    remedies[RemedyKind.points] = dataclasses.replace(
        remedies[RemedyKind.points], make=None, describe=None)  # type: ignore[arg-type]
    assert problems(INCIDENT_TYPES, remedies, ["en"], _all_there, _words) == [
        "remedy kind gift: no entry",
        "remedy kind points: no make",
        "remedy kind points: no describe",
        "remedy kind personal_call: no task",
    ]


def test_a_missing_template_is_named() -> None:
    def exists(name: str) -> bool:
        return name != "ro/item_missing.txt.j2"

    assert problems(INCIDENT_TYPES, REMEDY_KINDS, ["en", "ro"], exists, _words) == [
        "incident type item_missing: no template ro/item_missing.txt.j2"]


def test_missing_words_of_a_remedy_are_named() -> None:
    macro = ('{% macro remedy(r, fmt, short=false) -%}'
             '{%- if r.kind == "refund" -%}a refund{%- elif r.kind != "gift" -%}something'
             '{%- endif -%}{%- endmacro %}')
    env = Environment(loader=DictLoader({"xx/_remedies.txt.j2": macro}), autoescape=True)
    assert problems(INCIDENT_TYPES, REMEDY_KINDS, ["xx"], _all_there, rendered_by(env)) == [
        "remedy kind gift: no words in xx/_remedies.txt.j2"]
