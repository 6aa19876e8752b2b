"""`amends bench` (and `make bench`): measure, then print a table and write a JSON file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from amends import bench, stack

console = Console(width=None if Console().is_terminal else 140)


def _row(table: Table, figure: bench.Figure, fmt: str = "{:,.0f}") -> None:
    low, high = figure.spread
    table.add_row(figure.name, fmt.format(figure.median), f"{fmt.format(low)} to "
                  f"{fmt.format(high)}", figure.unit, str(len(figure.runs)), figure.note)


def run_bench(
    runs: Annotated[int, typer.Option(help="repetitions of each figure")] = 3,
    messages: Annotated[int, typer.Option(help="events per throughput run")] = 20_000,
    latency_seconds: Annotated[float, typer.Option(help="length of each latency run")] = 20.0,
    out: Annotated[Path, typer.Option(help="where the JSON results go")] = Path(
        "bench-results"),
) -> None:
    """Throughput against the raw Kafka ceiling, and event-to-apology latency."""
    settings = stack.StackSettings()
    logs = settings.run_dir / "bench"
    figures: list[bench.Figure] = []
    with console.status("starting the local stack") as status:
        stack.up(settings, progress=status.update)
        bootstrap, mongo = settings.kafka_bootstrap, settings.mongo_url

        ceiling = bench.Figure("ceiling: 3 plain hops", "events/s")
        pipeline = bench.Figure("pipeline: intake → decision → fulfilment", "incidents/s")
        for i in range(runs):
            status.update(f"ceiling, run {i + 1}/{runs} ({messages:,} events)")
            ceiling.runs.append(asyncio.run(bench.ceiling(bootstrap, messages, logs)))
            status.update(f"pipeline, run {i + 1}/{runs} ({messages:,} events)")
            pipeline.runs.append(asyncio.run(bench.pipeline_throughput(bootstrap, mongo,
                                                                       messages, logs)))
        ratio = bench.Figure("pipeline / ceiling", "%", [
            100 * p / c for p, c in zip(pipeline.runs, ceiling.runs, strict=True)])
        figures += [ceiling, pipeline, ratio]

        for rate in (200, 1000):
            p50 = bench.Figure(f"event → apology p50 at {rate}/s", "ms")
            p99 = bench.Figure(f"event → apology p99 at {rate}/s", "ms")
            p999 = bench.Figure(f"event → apology p99.9 at {rate}/s", "ms")
            lag = bench.Figure(f"largest intake lag at {rate}/s", "messages")
            for i in range(runs):
                status.update(f"latency at {rate}/s, run {i + 1}/{runs}")
                result = asyncio.run(bench.latency(bootstrap, mongo, rate, latency_seconds,
                                                   logs))
                p50.runs.append(result["p50"])
                p99.runs.append(result["p99"])
                p999.runs.append(result["p99.9"])
                lag.runs.append(result["max_lag"])
            figures += [p50, p99, p999, lag]

    table = Table(title=f"Amends benchmark ({runs} runs each; median and min to max)")
    for column in ("figure", "median", "spread", "unit", "runs", "note"):
        table.add_column(column, justify="right" if column in {"median", "spread", "runs"}
                         else "left")
    for figure in figures:
        _row(table, figure, "{:,.1f}" if figure.unit in {"%", "ms"} else "{:,.0f}")
    console.print(table)
    path = bench.save(figures, out, {"runs": runs, "messages": messages,
                                     "latency_seconds": latency_seconds,
                                     "partitions": bench.PARTITIONS})
    console.print(f"results written to {path}")
