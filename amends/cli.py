"""The `amends` command: the operator's tools (whoami, case, review, dlq, replay, audit,
customer, policy, report, trace). The local stack, the demo and the benchmark are development tools:
`python -m devtools`, not installed with the product."""

from __future__ import annotations

import typer
from rich.console import Console

from amends import (
    cli_case,
    cli_customer,
    cli_ops,
    cli_outage,
    cli_policy,
    cli_report,
    cli_review,
    cli_trace,
)
from amends.cli_auth import Operator

app = typer.Typer(help="Amends: service recovery on Kafka.", no_args_is_help=True,
                  add_completion=False)
app.add_typer(cli_ops.dlq_app, name="dlq")
app.add_typer(cli_policy.policy_app, name="policy")
app.add_typer(cli_review.review_app, name="review")
app.add_typer(cli_customer.customer_app, name="customer")
app.add_typer(cli_report.report_app, name="report")
app.add_typer(cli_outage.outage_app, name="outage")
app.command()(cli_ops.replay)
app.command()(cli_ops.audit)
app.command()(cli_case.case)
app.command()(cli_trace.trace)
console = Console(width=None if Console().is_terminal else 140)


@app.command()
def whoami() -> None:
    """Who the services take you for: the subject, roles and tenant of your credentials."""
    operator = Operator()
    me = operator.whoami()
    console.print(f"{me.subject}: {', '.join(r.name for r in sorted(me.roles)) or 'no role'} "
                  f"in tenant {me.tenant} (by {me.via}, credentials from "
                  f"{operator.credentials.source})", highlight=False)
