"""Traces across the hops: a span per incident per service, with the W3C `traceparent` in the
Kafka records' headers so that the next hop's span is a child of this one. Exported by OTLP
when an endpoint is configured, else as OTLP/JSON lines to a file per service (what
`amends trace` reads).

The services handle batches, so a span covers its incident's part of a batch: from the
batch's arrival to the end of its handling. Each incident's trace id derives from its id
(`schemas.common.trace_id`), so a hop that receives no header (an older producer) still
lands in the incident's trace. Spans carry ids, topics and counts; nothing personal."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from schemas.common import trace_id
from services.common.messaging import Outgoing, Publisher, Record
from services.common.settings import ServiceSettings

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
_HEX = frozenset("0123456789abcdef")


def traceparent(context: SpanContext) -> bytes:
    """The W3C `traceparent` header of `context` (version 00)."""
    return (f"00-{context.trace_id:032x}-{context.span_id:016x}-"
            f"{int(context.trace_flags):02x}").encode()


def parse_traceparent(value: bytes) -> SpanContext | None:
    """The remote span context a `traceparent` names, or None when it is not one (a
    malformed header is ignored, as the W3C recommendation says, never an error)."""
    try:
        text = value.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    parts = text.split("-")
    if (len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff"
            or (parts[0] == "00" and len(parts) != 4)
            or [len(p) for p in parts[1:4]] != [32, 16, 2]
            or not set("".join(parts[:4])) <= _HEX):
        return None
    trace, span = int(parts[1], 16), int(parts[2], 16)
    if not trace or not span:
        return None
    return SpanContext(trace, span, is_remote=True, trace_flags=TraceFlags(int(parts[3], 16)))


def _header(record: Record) -> SpanContext | None:
    for name, value in record.headers:
        if name == TRACEPARENT:
            return parse_traceparent(value)
    return None


@dataclass(slots=True)
class _Pending:
    """A span of a hop still under way: its context is known (a message may carry it), the
    span is recorded when the hop ends."""

    context: SpanContext
    parent: SpanContext | None
    incident_id: str | None


_SCOPE = InstrumentationScope("amends")
_SPAN_IDS = random.Random()  # span ids need to be unique, not secret


class Hop:
    """One service's handling of one batch (or one request): a span per trace it touches,
    each starting when the batch arrived and ending when its handling did.

    The spans are made as the SDK's `ReadableSpan`s and handed to its batch processor when
    the hop ends, not through its `Tracer`: every span of a hop has the same start and end,
    so nothing is gained by live span objects, and they cost three times as much CPU."""

    def __init__(self, tracing: Tracing, name: str, kind: SpanKind,
                 records: Sequence[Record] = ()) -> None:
        self._tracing = tracing
        self.name = name
        self.kind = kind
        self.start_ns = time.time_ns()  # spans measure real time, not the injected clock
        self.pending: dict[int, _Pending] = {}
        self.parents: dict[int, SpanContext] = {}
        self.topics = ",".join(sorted({r.topic for r in records}))
        self.size = len(records)
        for record in records:
            parent = _header(record)
            if parent is not None:
                self.parents[parent.trace_id] = parent

    def span(self, trace: int, incident_id: str | None = None) -> SpanContext:
        """The context of trace `trace`'s span in this hop: a child of the span the record
        of that trace named in its header, else the first span of the incident's trace.
        Sampled as its parent was, else by the trace id (as every hop decides alike)."""
        pending = self.pending.get(trace)
        if pending is not None:
            return pending.context
        parent = self.parents.get(trace)
        sampled = (parent.trace_flags.sampled if parent is not None
                   else self._tracing.samples(trace))
        context = SpanContext(trace, _SPAN_IDS.getrandbits(64) or 1, is_remote=False,
                              trace_flags=_SAMPLED if sampled else _NOT_SAMPLED)
        self.pending[trace] = _Pending(context, parent, incident_id)
        return context

    def end(self, error: BaseException | None = None) -> None:
        """Record every sampled span; a trace whose record came with a header and led to
        nothing published here (the last hop) gets its span too."""
        for trace in self.parents.keys() - self.pending.keys():
            self.span(trace)
        end = time.time_ns()
        # The type only: an error's text may quote a record.
        status = (Status(StatusCode.ERROR, type(error).__name__) if error is not None
                  else Status(StatusCode.UNSET))
        common: dict[str, str | int] = {"messaging.batch.message_count": self.size}
        if self.topics:
            common["messaging.destination.name"] = self.topics
        resource = self._tracing.resource
        for pending in self.pending.values():
            if not pending.context.trace_flags.sampled:
                continue
            attributes = (common if pending.incident_id is None
                          else {**common, "amends.incident_id": pending.incident_id})
            self._tracing.record(ReadableSpan(
                name=self.name, context=pending.context, parent=pending.parent,
                resource=resource, attributes=attributes, kind=self.kind,
                status=status, start_time=self.start_ns, end_time=end,
                instrumentation_scope=_SCOPE))
        self.pending.clear()


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_HOP: contextvars.ContextVar[Hop | None] = contextvars.ContextVar("amends_hop", default=None)


class Tracing:
    """A service's tracing, started in the lifespan; with `tracing` off, or before the start,
    every method passes through and costs nothing."""

    def __init__(self, settings: ServiceSettings, *,
                 exporter: SpanExporter | None = None) -> None:
        self.service = settings.service_name
        self.settings = settings
        self.enabled = settings.tracing != "off" and os.environ.get(
            "OTEL_SDK_DISABLED", "").strip().lower() != "true"
        # TraceIdRatioBased's rule: the trace id's low 64 bits below the ratio's share.
        self._bound = round(settings.trace_sample_ratio * (1 << 64))
        self._exporter = exporter
        self._processor: BatchSpanProcessor | None = None
        self.resource = Resource.get_empty()

    @property
    def active(self) -> bool:
        return self._processor is not None

    def start(self) -> None:
        if not self.enabled or self._processor is not None:
            return
        self.resource = Resource.create({"service.name": f"amends-{self.service}",
                                         "service.namespace": "amends"})
        # A queue of 2,048 spans (the SDK's default) is four batches of 500: a burst would
        # drop spans while the exporter writes. OTEL_BSP_MAX_QUEUE_SIZE still decides.
        queue = int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") or 32768)
        self._processor = BatchSpanProcessor(self._exporter or span_exporter(self.settings),
                                             max_queue_size=queue)

    def stop(self) -> None:
        """Export what is left and stop the export thread."""
        processor, self._processor = self._processor, None
        if processor is not None:
            processor.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped

    def force_flush(self) -> None:
        if self._processor is not None:
            self._processor.force_flush()

    def samples(self, trace: int) -> bool:
        return (trace & 0xFFFF_FFFF_FFFF_FFFF) < self._bound

    def record(self, span: ReadableSpan) -> None:
        if self._processor is not None:
            self._processor.on_end(span)

    def trace_id(self, incident_id: str) -> str | None:
        """The trace id a decision records: None while tracing is off."""
        return trace_id(incident_id) if self.enabled else None

    @contextlib.contextmanager
    def hop(self, name: str, records: Sequence[Record] = (), *,
            kind: SpanKind = SpanKind.CONSUMER) -> Iterator[Hop | None]:
        """The spans of one batch (or request) handled inside the block; messages published
        inside it carry their span's `traceparent`."""
        if self._processor is None:
            yield None
            return
        hop = Hop(self, name, kind, records)
        token = _HOP.set(hop)
        try:
            yield hop
        except BaseException as exc:
            hop.end(exc)
            raise
        else:
            hop.end()
        finally:
            _HOP.reset(token)

    def publisher(self, inner: Publisher) -> Publisher:
        return TracedPublisher(inner, self)


class TracedPublisher:
    """Puts the `traceparent` of its incident's span on each message about an incident."""

    def __init__(self, inner: Publisher, tracing: Tracing) -> None:
        self.inner = inner
        self.tracing = tracing

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        if not self.tracing.active or not any(m.incident_id for m in messages):
            await self.inner.publish_all(messages)
            return
        if _HOP.get() is not None:
            await self.inner.publish_all(self._traced(messages))
            return
        # Published outside a batch (an HTTP request, a sweep): the span covers the sending.
        with self.tracing.hop("publish", kind=SpanKind.PRODUCER):
            await self.inner.publish_all(self._traced(messages))

    def _traced(self, messages: Sequence[Outgoing]) -> list[Outgoing]:
        hop = _HOP.get()
        assert hop is not None  # publish_all opens one
        traced: list[Outgoing] = []
        for message in messages:
            if message.incident_id is None:
                traced.append(message)
                continue
            context = hop.span(int(trace_id(message.incident_id), 16), message.incident_id)
            traced.append(Outgoing(  # not dataclasses.replace: five times slower
                message.topic, message.key, message.value, message.incident_id,
                (*message.headers, (TRACEPARENT, traceparent(context)))))
        return traced


def span_exporter(settings: ServiceSettings) -> SpanExporter:
    """OTLP over HTTP when an endpoint is configured (the standard OTEL_EXPORTER_OTLP_*
    variables) or `tracing` says otlp; else OTLP/JSON lines in `trace_dir`."""
    configured = any(os.environ.get(name) for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    if settings.tracing == "otlp" or (settings.tracing == "auto" and configured):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,  # only imported when used: it pulls in protobuf and requests
        )
        return OTLPSpanExporter()
    return OtlpJsonFileExporter(Path(settings.trace_dir) / f"{settings.service_name}.jsonl",
                                max_bytes=settings.trace_file_max_mb * 1024 * 1024)


# --- OTLP/JSON ------------------------------------------------------------------------------

_KINDS = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4,
          SpanKind.CONSUMER: 5}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # int64 is a string in OTLP/JSON
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _attributes(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in (attributes or {}).items()]


@functools.lru_cache(maxsize=256)
def _key_json(key: str) -> str:  # a few keys, on every span
    return f'{{"key":{_dumps(key)},"value":'


@functools.lru_cache(maxsize=256)
def _name_json(name: str) -> str:  # a few names, on every span
    return _dumps(name)


_PLAIN = re.compile(r"[\w.:,/-]*", re.ASCII)  # ids and topic names: nothing to escape


def _value_json(value: Any) -> str:
    if isinstance(value, str):
        return (f'{{"stringValue":"{value}"}}' if _PLAIN.fullmatch(value)
                else f'{{"stringValue":{_dumps(value)}}}')
    if isinstance(value, int) and not isinstance(value, bool):
        return f'{{"intValue":"{value}"}}'
    return _dumps(_value(value))


def _attributes_json(attributes: Mapping[str, Any] | None) -> str:
    return ",".join(f"{_key_json(k)}{_value_json(v)}}}"
                    for k, v in (attributes or {}).items())


def _span_json(span: ReadableSpan) -> str:
    """One span as OTLP/JSON text, written out directly: building it as dicts for
    `json.dumps` cost about four times as much, in every traced service."""
    context = span.get_span_context()
    assert context is not None  # every SDK span has one
    text = [f'{{"traceId":"{context.trace_id:032x}","spanId":"{context.span_id:016x}"']
    if span.parent is not None:
        text.append(f',"parentSpanId":"{span.parent.span_id:016x}"')
    text.append(f',"name":{_name_json(span.name)},"kind":{_KINDS.get(span.kind, 0)},'
                f'"startTimeUnixNano":"{span.start_time or 0}",'
                f'"endTimeUnixNano":"{span.end_time or 0}",'
                f'"flags":{int(context.trace_flags)},'
                f'"attributes":[{_attributes_json(span.attributes)}]')
    if span.links:
        text.append(',"links":' + _dumps([
            {"traceId": f"{link.context.trace_id:032x}",
             "spanId": f"{link.context.span_id:016x}",
             "attributes": _attributes(link.attributes)} for link in span.links]))
    if span.status.status_code is not StatusCode.UNSET:
        text.append(',"status":' + _dumps(
            {"code": 1 if span.status.status_code is StatusCode.OK else 2,
             "message": span.status.description or ""}))
    text.append("}")
    return "".join(text)


def otlp_json_line(spans: Sequence[ReadableSpan]) -> str:
    """`spans` as the text of one OTLP/JSON ExportTraceServiceRequest, grouped by resource
    and scope."""
    grouped: dict[int, tuple[Resource, dict[str, list[str]]]] = {}
    for span in spans:
        _, scopes = grouped.setdefault(id(span.resource), (span.resource, {}))
        scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
        scopes.setdefault(scope, []).append(_span_json(span))
    resources = []
    for resource, scopes in grouped.values():
        scope_spans = ",".join(
            f'{{"scope":{{"name":{_dumps(scope)}}},"spans":[{",".join(bodies)}]}}'
            for scope, bodies in scopes.items())
        attributes = _attributes_json(resource.attributes)
        resources.append(f'{{"resource":{{"attributes":[{attributes}]}},'
                         f'"scopeSpans":[{scope_spans}]}}')
    return f'{{"resourceSpans":[{",".join(resources)}]}}'


class OtlpJsonFileExporter(SpanExporter):
    """Appends each export as one line of OTLP/JSON (the OpenTelemetry Collector's file
    exporter writes the same). Past `max_bytes` the file is moved to `<name>.1` (replacing
    the one before) and a new one begun: the two together are what is kept."""

    def __init__(self, path: Path, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        line = otlp_json_line(spans) + "\n"
        try:
            with self._lock:
                file = self._open()
                file.write(line)
                file.flush()
                if file.tell() >= self.max_bytes:
                    file.close()
                    self._file = None
                    self.path.replace(self.path.with_name(self.path.name + ".1"))
        except OSError:
            log.warning("could not write spans to %s", self.path, exc_info=True)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        return self._file

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        del timeout_millis
        return True
