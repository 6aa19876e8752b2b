"""The demo's closing act: the later events of its customers are valid upstream events with
ids a second run repeats, and the tables and chart show what came of them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from amends import aftermath_report as report
from devtools import demo_aftermath as demo
from schemas.incident import Incident
from schemas.upstream import upstream_event_adapter
from services.intake.aftermath import AftermathView
from tests.factories import incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CUSTOMERS = [("ana-1", "gold"), ("boris-1", "standard"), ("farid-1", "standard")]


def test_the_later_events_are_valid_and_their_ids_repeat() -> None:
    events = demo.events_after(CUSTOMERS, NOW)
    parsed = [upstream_event_adapter.validate_python(e) for _, e in events]
    assert [(p.type, p.subject) for p in parsed] == [("order.placed", "ana-1"),
                                                     ("support.ticket_updated", "farid-1")]
    assert [e["id"] for _, e in demo.events_after(CUSTOMERS, NOW + timedelta(hours=1))] == [
        e["id"] for _, e in events]


def test_the_tables_and_the_chart_show_who_came_back(tmp_path: Path) -> None:
    incidents = [Incident.model_validate(incident("delivery_delayed", customer_id=c,
                                                  fact=f"o-{c}", at=NOW - timedelta(hours=2)))
                 for c, _ in CUSTOMERS]
    view = AftermathView((7, 30, 90))
    view.follow(view.unfollowed(incidents))
    view.keep(view.facts([upstream_event_adapter.validate_python(e)
                          for _, e in demo.events_after(CUSTOMERS, NOW)]))
    rows = report.rows(view.records(), {})
    figures = report.select(report.figures(rows, (7, 30, 90), NOW + timedelta(days=90),
                                           ["remedy kind"]), 7)
    found = demo.Aftermath(rows, figures, 7)
    out = Console(width=200, record=True)
    out.print(demo.customer_table(found))
    out.print(demo.remedy_table(found))
    text = out.export_text()
    assert "38.00 EUR" in text  # ana's order
    assert "33% [6%, 79%]" in text  # one of three ordered again; one complained
    chart = demo.write_chart(found, tmp_path / "sub" / "demo.svg")
    assert ET.fromstring(chart.read_text()).tag.endswith("svg")
