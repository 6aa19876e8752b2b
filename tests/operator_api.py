"""Decision's API served over HTTP for tests of the operators' tools: the CLI checks the
caller's credentials with its `GET /v1/whoami`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from services.common.access import Role
from services.decision.app import create_app as decision_app
from tests import auth
from tests.infra import Infra, new_suffix
from tests.pipeline import Topics, settings_for
from tests.servers import served


@contextlib.contextmanager
def decision_api(infra: Infra) -> Iterator[str]:
    """A decision service of its own (its own topics and database, the test operators'
    keys) served over HTTP: what the CLI checks credentials against."""
    suffix = new_suffix()
    _, settings, _ = settings_for(infra, Topics.unique(suffix), f"amends_test_{suffix}")
    with served(decision_app(settings), "decision") as url:
        yield url


@contextlib.contextmanager
def operator_env(infra: Infra, **more: str) -> Iterator[dict[str, str]]:
    """The environment of an admin's `amends` command: its token, and a decision service
    that checks it; `more` adds variables (topics)."""
    with decision_api(infra) as url:
        yield {"AMENDS_DECISION_URL": url,
               "AMENDS_TOKEN": auth.headers(Role.admin)["Authorization"].removeprefix(
                   "Bearer "), **more}
