"""`amends replies`: the commands call decision's reply API with the right method, path and
body, show the queue as a table (escalated ones marked), and none deletes a review."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from amends import cli_replies
from amends.cli import app
from services.decision import reply_http
from services.decision.domain import replies
from tests.decisions import APOLOGY, CREDIT, T0, decided, made_incident

pytestmark = pytest.mark.unit

SLA = replies.ReplySla(timedelta(hours=4), timedelta(hours=24))


def reply_json(overdue: bool = False) -> dict[str, Any]:
    made = made_incident("negative_review", paid=None, rating=1, review_platform="trustpilot",
                         review_url="https://reviews.example/r-1")
    draft = replies.draft(decided(made, APOLOGY, CREDIT), T0)
    assert draft is not None
    now = T0 + (timedelta(hours=5) if overdue else timedelta(minutes=5))
    return reply_http.out(replies.view(draft, [], SLA, now)).model_dump(mode="json")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    made: list[tuple[str, str, Any]] = []

    def fake(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        made.append((method, path, body))
        return [reply_json(overdue=True)] if path.startswith("/v1/replies?") else reply_json()

    monkeypatch.setattr(cli_replies, "_call", fake)
    return made


def test_list_shows_the_escalated_queue_as_a_table(calls: list[tuple[str, str, Any]]) -> None:
    result = CliRunner().invoke(app, ["replies", "list", "--queue", "escalated"])
    assert result.exit_code == 0, result.output
    assert calls == [("GET", "/v1/replies?queue=escalated&limit=200", None)]
    assert "1 reply (escalated)" in result.output
    assert "escalated" in result.output
    assert "(overdue)" in result.output
    assert "store_credit" in result.output


def test_an_unknown_queue_is_refused_before_any_call(calls: list[tuple[str, str, Any]]) -> None:
    result = CliRunner().invoke(app, ["replies", "list", "--queue", "deleted"])
    assert result.exit_code != 0
    assert calls == []


def test_the_steps_call_the_api(calls: list[tuple[str, str, Any]], tmp_path: Path) -> None:
    text = tmp_path / "reply.txt"
    text.write_text("We're sorry: it was our failure. Thank you.", encoding="utf-8")
    runner = CliRunner()
    for args in (["show", "r-1"], ["edit", "r-1", "--file", str(text)], ["approve", "r-1"],
                 ["posted", "r-1", "--url", "https://reviews.example/r-1#reply"]):
        result = runner.invoke(app, ["replies", *args])
        assert result.exit_code == 0, result.output
        assert "We're sorry." in result.output
    assert calls == [
        ("GET", "/v1/replies/r-1", None),
        ("POST", "/v1/replies/r-1/edit", {"text": text.read_text(encoding="utf-8")}),
        ("POST", "/v1/replies/r-1/approve", None),
        ("POST", "/v1/replies/r-1/posted", {"public_url": "https://reviews.example/r-1#reply"}),
    ]


def test_no_command_deletes_or_hides_a_review() -> None:
    names = {c.name or (c.callback.__name__ if c.callback else "")
             for c in cli_replies.replies_app.registered_commands}
    assert names == {"list", "show", "edit", "approve", "posted"}
