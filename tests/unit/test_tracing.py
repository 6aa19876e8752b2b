"""Traces across the hops (`services.common.tracing`): the `traceparent` a message carries,
the spans a batch makes, the OTLP/JSON files and `amends trace` reading them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from typer.testing import CliRunner

from amends.cli import app as cli
from amends.cli_trace import spans_of
from schemas.common import trace_id
from schemas.incident import Incident, IncidentDetected
from services.common.messaging import HEADERS, Outgoing, Record, outgoing
from services.common.settings import ServiceSettings
from services.common.tracing import (
    TRACEPARENT,
    OtlpJsonFileExporter,
    Tracing,
    otlp_json_line,
    parse_traceparent,
    span_exporter,
    traceparent,
)
from tests import factories

pytestmark = pytest.mark.unit

INCIDENT = Incident.model_validate(factories.incident(customer_id="c-7", fact="o-7"))
AT = datetime(2026, 11, 23, 12, tzinfo=UTC)


class Collected:
    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        self.sent.extend(messages)


def _settings(**fields: object) -> ServiceSettings:
    return ServiceSettings.model_validate({"tracing": "file", **fields})


def _tracing(exporter: InMemorySpanExporter, **fields: object) -> Tracing:
    tracing = Tracing(_settings(**fields), exporter=exporter)
    tracing.start()
    return tracing


def _incident_message() -> Outgoing:
    return outgoing("incidents", IncidentDetected(id=INCIDENT.incident_id, source="tests",
                                                  time=AT, subject="c-7", data=INCIDENT))


def _record(headers: tuple[tuple[str, bytes], ...] = HEADERS) -> Record:
    return Record("incidents", 0, 1, b"c-7", b"{}", headers)


def _context(span: ReadableSpan) -> SpanContext:
    context = span.get_span_context()
    assert context is not None
    return context


def _header(message: Outgoing) -> SpanContext:
    found = [parse_traceparent(v) for k, v in message.headers if k == TRACEPARENT]
    assert len(found) == 1
    assert found[0] is not None
    return found[0]


def test_traceparent_reads_and_writes_what_the_w3c_propagator_does() -> None:
    context = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331,
                          is_remote=True, trace_flags=TraceFlags(1))
    written = traceparent(context)
    assert written == b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(
        carrier, set_span_in_context(NonRecordingSpan(context)))
    assert carrier["traceparent"].encode() == written
    assert parse_traceparent(written) == context


@pytest.mark.parametrize("value", [
    b"", b"garbage", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
    b"00-00000000000000000000000000000000-b7ad6b7169203331-01",  # a zero trace id
    b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # a zero span id
    b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # the forbidden version
    b"00-0af7651916cd43dd8448eb211c80319x-b7ad6b7169203331-01",  # not hex
    b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    b"\xff\xfe"])
def test_a_malformed_traceparent_is_ignored(value: bytes) -> None:
    assert parse_traceparent(value) is None


def test_outgoing_names_the_incident_an_event_is_about() -> None:
    assert _incident_message().incident_id == INCIDENT.incident_id


async def test_a_message_published_in_a_batch_carries_its_incidents_span() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    inner = Collected()
    upstream = SpanContext(int(trace_id(INCIDENT.incident_id), 16), 0x1234, is_remote=True,
                           trace_flags=TraceFlags(1))
    with tracing.hop("when_incidents_detected",
                     [_record((*HEADERS, (TRACEPARENT, traceparent(upstream))))]):
        await tracing.publisher(inner).publish_all([_incident_message()])
    tracing.stop()

    [sent] = inner.sent
    assert sent.headers[0] == HEADERS[0]
    [span] = exporter.get_finished_spans()
    carried = _header(sent)
    assert (carried.trace_id, carried.span_id) == (upstream.trace_id,
                                                   _context(span).span_id)
    assert carried.trace_flags.sampled
    assert span.parent is not None
    assert span.parent.span_id == 0x1234
    assert span.name == "when_incidents_detected"
    assert span.attributes is not None
    assert span.attributes["amends.incident_id"] == INCIDENT.incident_id
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.start_time <= span.end_time


async def test_without_a_header_the_span_begins_the_incidents_own_trace() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    inner = Collected()
    with tracing.hop("when_orders_updated", [_record()]):
        await tracing.publisher(inner).publish_all([_incident_message()])
    tracing.stop()

    [span] = exporter.get_finished_spans()
    assert span.parent is None
    assert f"{_context(span).trace_id:032x}" == trace_id(INCIDENT.incident_id)
    assert _header(inner.sent[0]).trace_id == _context(span).trace_id


async def test_the_last_hop_records_a_span_for_each_traced_record() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    with pytest.raises(RuntimeError), tracing.hop(
            "when_decisions_made", [_record((*HEADERS, (TRACEPARENT, traceparent(parent))))]):
        raise RuntimeError("the batch failed")
    tracing.stop()

    [span] = exporter.get_finished_spans()
    assert _context(span).trace_id == 0xABC
    assert span.parent is not None
    assert span.parent.span_id == 0xDEF
    assert span.status.description == "RuntimeError"  # the type, never the error's text


async def test_messages_outside_a_batch_get_a_span_of_their_own() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    inner = Collected()
    await tracing.publisher(inner).publish_all([_incident_message(),
                                                Outgoing("audit", "k", b"{}")])
    tracing.stop()

    [span] = exporter.get_finished_spans()
    assert _header(inner.sent[0]).span_id == _context(span).span_id
    assert inner.sent[1].headers == HEADERS  # not about an incident: untouched


async def test_tracing_off_adds_nothing() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter, tracing="off")
    inner = Collected()
    assert not tracing.enabled
    assert tracing.trace_id(INCIDENT.incident_id) is None
    with tracing.hop("when_incidents_detected", [_record()]) as hop:
        assert hop is None
        await tracing.publisher(inner).publish_all([_incident_message()])
    assert inner.sent[0].headers == HEADERS
    assert exporter.get_finished_spans() == ()


async def test_an_incident_not_sampled_passes_that_on_and_exports_nothing() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter, trace_sample_ratio=0.0)
    inner = Collected()
    with tracing.hop("when_orders_updated", [_record()]):
        await tracing.publisher(inner).publish_all([_incident_message()])
    tracing.stop()
    assert not _header(inner.sent[0]).trace_flags.sampled
    assert exporter.get_finished_spans() == ()


def test_the_sdk_honours_otel_sdk_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not Tracing(_settings()).enabled


# --- files and `amends trace` ---------------------------------------------------------------

async def _three_hops(directory: Path) -> None:
    """An incident carried by intake, decision and fulfilment, each tracing to its file."""
    header: tuple[tuple[str, bytes], ...] = HEADERS
    for service in ("intake", "decision", "fulfilment"):
        settings = _settings(trace_dir=directory)
        tracing = Tracing(settings, exporter=OtlpJsonFileExporter(
            directory / f"{service}.jsonl"))
        tracing.service = service
        tracing.start()
        inner = Collected()
        with tracing.hop(f"{service} hop", [_record(header)]):
            if service != "fulfilment":
                await tracing.publisher(inner).publish_all([_incident_message()])
        tracing.stop()
        header = inner.sent[0].headers if inner.sent else header


def _exports(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(directory.glob("*.jsonl"))
            for line in path.read_text().splitlines()]


async def test_the_files_hold_otlp_json_and_amends_trace_draws_the_waterfall(
        tmp_path: Path) -> None:
    await _three_hops(tmp_path)
    lines = _exports(tmp_path)
    assert len(lines) == 3
    [resource] = lines[0]["resourceSpans"]
    assert {"key": "service.name", "value": {"stringValue": "amends-decision"}} in (
        resource["resource"]["attributes"])
    [otlp_span] = resource["scopeSpans"][0]["spans"]
    assert otlp_span["traceId"] == trace_id(INCIDENT.incident_id)
    assert otlp_span["kind"] == 5  # SPAN_KIND_CONSUMER
    assert int(otlp_span["endTimeUnixNano"]) >= int(otlp_span["startTimeUnixNano"]) > 0

    rows = spans_of(trace_id(INCIDENT.incident_id), tmp_path)
    assert [r.service for r in rows] == ["intake", "decision", "fulfilment"]
    assert rows[0].parent_id is None
    assert rows[1].parent_id == rows[0].span_id
    assert rows[2].parent_id == rows[1].span_id

    shown = CliRunner().invoke(cli, ["trace", INCIDENT.incident_id, "--dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "3 spans" in shown.output
    assert shown.output.index("intake") < shown.output.index("decision") < (
        shown.output.index("fulfilment"))


def test_amends_trace_says_when_it_finds_nothing(tmp_path: Path) -> None:
    shown = CliRunner().invoke(cli, ["trace", "no-such-incident", "--dir", str(tmp_path)])
    assert shown.exit_code == 1
    assert "no spans" in shown.output


async def test_a_full_file_is_moved_aside_and_still_read(tmp_path: Path) -> None:
    exporter = OtlpJsonFileExporter(tmp_path / "decision.jsonl")
    tracing = Tracing(_settings(), exporter=exporter)
    tracing.start()
    for n in range(3):
        with tracing.hop("hop", [_record()]):
            await tracing.publisher(Collected()).publish_all([_incident_message()])
        tracing.force_flush()
        if n == 0:  # the second export fills the file
            exporter.max_bytes = (tmp_path / "decision.jsonl").stat().st_size + 1
    tracing.stop()
    assert len((tmp_path / "decision.jsonl.1").read_text().splitlines()) == 2
    assert len((tmp_path / "decision.jsonl").read_text().splitlines()) == 1
    assert len(spans_of(trace_id(INCIDENT.incident_id), tmp_path)) == 3


def test_every_kind_of_attribute_is_written_as_otlp_json() -> None:
    span = ReadableSpan(
        name='a "quoted"\nname', context=SpanContext(0x1F, 0x2F, is_remote=False),
        attributes={"text": 'ü "q" \\ é', "flag": True, "share": 0.5, "many": [1, 2],
                    "count": 3})
    [request] = json.loads(otlp_json_line([span]))["resourceSpans"]
    [body] = request["scopeSpans"][0]["spans"]
    assert body["name"] == 'a "quoted"\nname'
    values = {a["key"]: a["value"] for a in body["attributes"]}
    assert values == {
        "text": {"stringValue": 'ü "q" \\ é'}, "flag": {"boolValue": True},
        "share": {"doubleValue": 0.5}, "count": {"intValue": "3"},
        "many": {"arrayValue": {"values": [{"intValue": "1"}, {"intValue": "2"}]}}}


def test_spans_go_by_otlp_when_an_endpoint_is_configured(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    auto = _settings(tracing="auto", trace_dir=tmp_path)
    written = span_exporter(auto)
    assert isinstance(written, OtlpJsonFileExporter)
    assert written.path == tmp_path / "service.jsonl"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert isinstance(span_exporter(auto), OTLPSpanExporter)
    assert isinstance(span_exporter(_settings(tracing="file")), OtlpJsonFileExporter)
