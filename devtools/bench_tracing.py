"""What tracing costs a service, in one process: batches of incidents handled as a hop
(the records' headers read, a span per incident, its `traceparent` put on the message
published) with a publisher that sends nothing, tracing off, sampled out and to a file.
CPU per incident per hop, the export thread's included:

    python -m devtools.bench_tracing [--batches 40] [--size 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from schemas.common import CustomerSnapshot
from schemas.incident import Detection, Incident, IncidentDetected, IncidentType, Severity
from schemas.incident import incident_id as incident_id_of
from services.common.messaging import HEADERS, Outgoing, Record, outgoing
from services.common.settings import ServiceSettings
from services.common.tracing import Tracing

AT = datetime(2026, 11, 23, 12, tzinfo=UTC)
MODES: dict[str, dict[str, object]] = {
    "off": {"tracing": "off"}, "sampled out": {"tracing": "file", "trace_sample_ratio": 0.0},
    "to a file": {"tracing": "file"}}


class _Nowhere:
    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        del messages


def _messages(size: int) -> list[Outgoing]:
    made = []
    for n in range(size):
        customer = f"c-{n}"
        incident = Incident(
            incident_id=incident_id_of(IncidentType.delivery_delayed, customer, f"o-{n}"),
            type=IncidentType.delivery_delayed, detection=Detection.proactive,
            severity=Severity.medium, customer=CustomerSnapshot(id=customer),
            occurred_at=AT, detected_at=AT, source="bench", order_id=f"o-{n}")
        made.append(outgoing("incidents", IncidentDetected(
            id=incident.incident_id, source="bench", time=AT, subject=customer, data=incident)))
    return made


async def _cpu_per_incident(fields: dict[str, object], messages: list[Outgoing],
                            batches: int) -> float:
    records = [Record("upstream", 0, n, b"k", b"{}", HEADERS) for n in range(len(messages))]
    with tempfile.TemporaryDirectory() as directory:
        tracing = Tracing(ServiceSettings.model_validate({**fields,
                                                          "trace_dir": Path(directory)}))
        tracing.start()
        publisher = tracing.publisher(_Nowhere()) if tracing.enabled else _Nowhere()
        began = time.process_time()
        for _ in range(batches):
            with tracing.hop("when_upstream_events_arrive", records):
                await publisher.publish_all(messages)
        tracing.stop()  # waits for the export thread to write everything
        return (time.process_time() - began) / (batches * len(messages)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    messages = _messages(args.size)
    table = Table(title=f"tracing, CPU per incident per hop ({args.runs} runs of "
                        f"{args.batches} batches of {args.size})", title_justify="left")
    for column in ("mode", "median µs", "runs µs"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode, fields in MODES.items():
        runs = [asyncio.run(_cpu_per_incident(fields, messages, args.batches))
                for _ in range(args.runs)]
        table.add_row(mode, f"{statistics.median(runs):.1f}",
                      ", ".join(f"{r:.1f}" for r in runs))
    Console().print(table)


if __name__ == "__main__":
    main()
