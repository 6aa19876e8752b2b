"""`amends outage`: what it asks decision and fulfilment, and how it shows the answers (a
table for an abort or a change, the window and a progress bar that follows the release)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from amends import cli_outage
from amends.cli import app as cli

pytestmark = pytest.mark.unit


class FakeOperator:
    """The services' answers, in order per path; every call is kept."""

    calls: ClassVar[list[tuple[str, str, str, dict[str, Any] | None]]] = []
    answers: ClassVar[dict[str, list[dict[str, Any]]]] = {}

    def call(self, service: str, method: str, path: str,
             body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append((service, method, path, body))
        queue = self.answers[path]
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> type[FakeOperator]:
    FakeOperator.calls, FakeOperator.answers = [], {}
    monkeypatch.setattr(cli_outage, "Operator", FakeOperator)
    monkeypatch.setattr("amends.cli_outage.time.sleep", lambda _: None)
    return FakeOperator


def amended(revised: int) -> dict[str, Any]:
    return {"outage_id": "out-1", "revised": revised, "unchanged": 0, "held_for_review": 1,
            "released": "30.00", "currency": "EUR"}


def test_abort_and_change_send_what_was_asked_and_show_a_table(
        operator: type[FakeOperator]) -> None:
    operator.answers = {"/v1/outages/out-1/abort": [amended(3)],
                        "/v1/outages/out-1/change": [amended(2)]}
    aborted = CliRunner().invoke(cli, ["outage", "abort", "out-1", "--reason", "wrong list"])
    changed = CliRunner().invoke(cli, ["outage", "change", "out-1", "--reason", "less",
                                       "--points", "50"])
    assert aborted.exit_code == 0, aborted.output
    assert "remedies aborted" in aborted.output
    assert "30.00 EUR" in aborted.output
    assert changed.exit_code == 0, changed.output
    assert operator.calls == [
        ("decision", "POST", "/v1/outages/out-1/abort", {"reason": "wrong list"}),
        ("decision", "POST", "/v1/outages/out-1/change",
         {"reason": "less", "apology_only": False, "points": 50})]


def test_progress_follows_the_release_until_nothing_is_held(
        operator: type[FakeOperator]) -> None:
    def seen(held: int, released: int) -> dict[str, Any]:
        return {"outage_id": "out-1", "decisions": 4, "held": held, "released": released,
                "cancelled": 0, "window_ends": None}

    operator.answers = {
        "/v1/outages/out-1/window": [{"decisions": 4, "window_ends": "2026-11-23T12:10:00Z",
                                      "open": False, "aborted": 0, "changed": 0}],
        "/v1/outages/out-1/progress": [seen(4, 0), seen(2, 2), seen(0, 4)]}
    shown = CliRunner().invoke(cli, ["outage", "progress", "out-1"])
    assert shown.exit_code == 0, shown.output
    assert "window ends 2026-11-23T12:10:00Z (closed)" in shown.output
    assert "4/4" in shown.output
    assert [c[2] for c in operator.calls].count("/v1/outages/out-1/progress") == 3
