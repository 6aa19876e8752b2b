"""`amends policy backtest --store DB --retention`: beside what a policy would have cost, the
share of customers it would have kept, estimated from the recorded decisions, their
aftermath (intake's store) and the logged arm probabilities (ADR 0018)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table

from amends import retention_source
from amends.cli_ops import OpsSettings
from services.common.adapters.mongo import make_client
from services.decision.backtest.counterfactual import (
    Counterfactual,
    Logged,
    chosen_actions,
    estimate,
)
from services.decision.domain.policy import Policy
from services.intake.settings import IntakeSettings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def _logged(decision_db: str, intake_db: str, start: datetime | None,
                  stop: datetime | None, days: int, now: datetime) -> list[Logged]:
    """The recorded decisions of incidents between `start` and `stop` whose `days` have
    passed, each with whether the customer ordered again within them, in time order."""
    client = make_client(OpsSettings().mongo_url)
    try:
        aftermaths = await retention_source.aftermaths(
            client, intake_db, start or EPOCH, IntakeSettings().aftermath_windows_days)
        closed = [a for a in aftermaths
                  if a.followed.occurred_at + timedelta(days=days) <= now
                  and (stop is None or a.followed.occurred_at < stop)]
        decisions = await retention_source.decisions(
            client, decision_db, [a.followed.incident_id for a in closed])
    finally:
        await client.close()
    joined = [(decisions[a.followed.incident_id], a.window(days).reordered)
              for a in closed if a.followed.incident_id in decisions]
    joined.sort(key=lambda pair: (pair[0].incident.detected_at, pair[0].decision_id))
    return [Logged.of(decision, reordered) for decision, reordered in joined]


def estimates(policies: Sequence[Policy], logged: Sequence[Logged]
              ) -> list[tuple[Policy, Counterfactual]]:
    incidents = [record.incident for record in logged]
    return [(policy, estimate(logged, chosen_actions(incidents, policy)))
            for policy in policies]


def table(found: Sequence[tuple[Policy, Counterfactual]], days: int) -> Table:
    out = Table(title=f"retention: customers who ordered again within {days} days "
                "(counterfactual; 95% bootstrap intervals)", title_justify="left")
    for name in ("policy", "incidents", "recorded", "SNIPS", "doubly robust",
                 "matching decisions", "effective sample", "its commonest actions"):
        out.add_column(name, justify="left" if name in ("policy", "its commonest actions")
                       else "right")
    for policy, result in found:
        told = [f"{e.value:.1%} [{e.low:.1%}, {e.high:.1%}]" if e is not None else "not told"
                for e in (result.snips, result.dr)]
        common = ", ".join(f"{a} ({c / result.n:.0%})" for a, c in
                           result.actions.most_common(3)) if result.n else "-"
        out.add_row(policy.version, f"{result.n:,}", f"{result.logged_rate:.1%}", *told,
                    f"{result.matched:,}", f"{result.ess:,.0f}", common)
    return out


def show(console: Console, policies: Sequence[Policy], decision_db: str, intake_db: str,
         start: datetime | None, stop: datetime | None, days: int) -> None:
    # Reading shows its own progress (the decisions, in chunks): no second live display.
    logged = asyncio.run(_logged(decision_db, intake_db, start, stop, days, datetime.now(UTC)))
    with console.status(f"deciding {len(logged):,} incidents and estimating"):
        found = estimates(policies, logged)
    console.print(table(found, days))
    for policy, result in found:
        for reason in result.refused:
            console.print(f"policy {policy.version}: no estimate: {reason}", highlight=False)
