"""The registries lack nothing: every incident type and remedy kind has an entry with every
part, a message template in every locale and words in every locale's `remedy` macro. When
something is missing, the failure names it (type or kind, and part); the last tests prove that
by building registries with a part missing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest
from jinja2 import DictLoader, Environment

from schemas.decision import RemedyKind
from schemas.incident import IncidentType
from schemas.upstream import UPSTREAM_EVENT_TYPES
from services.decision.domain.policy import CUTTABLE
from services.fulfilment.messages import LOCALES, Formatter, Remedy, environment
from services.registry.incident_types import (
    INCIDENT_TYPES,
    IncidentEntry,
    missing_incident_parts,
)
from services.registry.remedy_kinds import REMEDY_KINDS, RemedyEntry, missing_remedy_parts

pytestmark = pytest.mark.unit

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
    known = {"delay", "wait", "outage", "charged", "ticket"}  # fulfilment's `_facts`
    assert {f for e in INCIDENT_TYPES.values() for f in e.template_facts} <= known


def test_every_trigger_is_an_upstream_event_type() -> None:
    unknown = {f"{kind.value}: {trigger}" for kind, entry in INCIDENT_TYPES.items()
               for trigger in entry.triggers if trigger not in UPSTREAM_EVENT_TYPES}
    assert not unknown


def test_generated_weights_are_those_of_the_backtest() -> None:
    weights = {k.value: e.generated.weight for k, e in INCIDENT_TYPES.items()}
    assert weights == {"delivery_delayed": 45, "item_defective": 10, "wrong_item": 6,
                       "item_missing": 6, "order_cancelled": 5, "double_charge": 3,
                       "support_wait_exceeded": 15, "service_outage": 10}


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
