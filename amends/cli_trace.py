"""`amends trace INCIDENT`: an incident's spans across the services as a waterfall, read from
the OTLP/JSON files the services write when they trace to files (the local stack does)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from amends import dev_key
from schemas.common import trace_id

console = Console(width=None if Console().is_terminal else 140)
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_COLOURS = {"intake": "cyan", "decision": "magenta", "fulfilment": "green"}


@dataclass(frozen=True)
class SpanRow:
    service: str
    name: str
    span_id: str
    parent_id: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    error: bool

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def trace_files(directory: Path) -> list[Path]:
    """The services' trace files, each one's older half (`.1`) first."""
    return sorted(directory.glob("*.jsonl.1")) + sorted(directory.glob("*.jsonl"))


def _plain(value: dict[str, Any]) -> Any:
    for kind in ("stringValue", "boolValue", "doubleValue"):
        if kind in value:
            return value[kind]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [_plain(v) for v in value["arrayValue"].get("values", [])]
    return None


def _attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _plain(item.get("value", {})) for item in items}


def _spans_in(line: str, trace: str) -> Iterator[SpanRow]:
    request = json.loads(line)
    for resource_spans in request.get("resourceSpans", []):
        resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
        service = str(resource.get("service.name", "?")).removeprefix("amends-")
        for scope in resource_spans.get("scopeSpans", []):
            for span in scope.get("spans", []):
                if span.get("traceId") != trace:
                    continue
                yield SpanRow(service=service, name=span.get("name", ""),
                              span_id=span.get("spanId", ""),
                              parent_id=span.get("parentSpanId") or None,
                              start_ns=int(span.get("startTimeUnixNano", 0)),
                              end_ns=int(span.get("endTimeUnixNano", 0)),
                              attributes=_attributes(span.get("attributes", [])),
                              error=span.get("status", {}).get("code") == 2)


def spans_of(trace: str, directory: Path) -> list[SpanRow]:
    """The spans of `trace` in the trace files under `directory`, earliest first (a parent
    before its children when they start together). Only lines naming the trace are parsed."""
    found: list[SpanRow] = []
    for path in trace_files(directory):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if trace in line:
                    found.extend(_spans_in(line, trace))
    unique = {row.span_id: row for row in found}  # an export retried may repeat a span
    depth: dict[str, int] = {}

    def depth_of(row: SpanRow) -> int:
        if row.span_id not in depth:
            parent = unique.get(row.parent_id or "")
            depth[row.span_id] = 0  # guards against a cycle in a damaged file
            depth[row.span_id] = depth_of(parent) + 1 if parent is not None else 0
        return depth[row.span_id]

    return sorted(unique.values(), key=lambda r: (r.start_ns, depth_of(r), r.end_ns))


def waterfall(rows: list[SpanRow], *, title: str, width: int = 40) -> Table:
    """The spans as rows of a table, each with a bar placed on the trace's time line."""
    start = min(r.start_ns for r in rows)
    total = max(max(r.end_ns for r in rows) - start, 1)
    table = Table(title=title, title_justify="left")
    for column, justify in (("service", "left"), ("span", "left"), ("starts ms", "right"),
                            ("ms", "right"), ("", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        first = int((row.start_ns - start) / total * width)
        length = max(1, round((row.end_ns - row.start_ns) / total * width))
        bar = Text(" " * first + "█" * min(length, width - first))
        bar.stylize("red" if row.error else _COLOURS.get(row.service, "blue"))
        table.add_row(row.service, row.name, f"{(row.start_ns - start) / 1e6:.1f}",
                      f"{row.duration_ms:.1f}", bar)
    return table


def _default_dir() -> Path:
    return Path(os.environ.get("AMENDS_TRACE_DIR") or dev_key.trace_dir())


def trace(
    incident: Annotated[str, typer.Argument(help="the incident's id (or a trace id)")],
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="the services' trace files (default: AMENDS_TRACE_DIR, else the local "
        "stack's)")] = None,
) -> None:
    """Show an incident's spans across intake, decision and fulfilment as a waterfall."""
    trace_hex = incident if _TRACE_ID.match(incident) else trace_id(incident)
    where = directory or _default_dir()
    rows = spans_of(trace_hex, where)
    if not rows:
        console.print(f"no spans of trace {trace_hex} in {where} (are the services tracing "
                      "to files, and has the export had a few seconds?)", highlight=False)
        raise typer.Exit(1)
    total = (max(r.end_ns for r in rows) - min(r.start_ns for r in rows)) / 1e6
    console.print(waterfall(rows, title=f"trace {trace_hex}: {len(rows)} spans, "
                                        f"{total:.1f} ms"))
