"""Intake's HTTP API for systems that cannot write to Kafka: upstream events (the same JSON as
on the topics, one or a batch) and incidents reported directly.

Each request goes through, in order: the body size cap (413), the source's signature (401),
its rate limit (429), JSON (400), the contracts (422), what the source may send (403); then
it is processed and answered with 202 and the incident ids it produced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from schemas.common import INPUT_CONTEXT
from schemas.report import IncidentReport
from schemas.upstream import UpstreamEvent, upstream_event_adapter
from services.common.clock import Clock
from services.intake.auth import (
    SIGNATURE_HEADER,
    SOURCE_HEADER,
    SignatureError,
    TokenBucket,
    Verifier,
    retry_after,
)
from services.intake.service import IntakeService, unknown_type
from services.intake.settings import IntakeSettings, SourcePolicy

log = logging.getLogger(__name__)

_NO_SOURCE = SourcePolicy()


class FieldProblem(BaseModel):
    field: str = Field(description='the bad field, e.g. "[2].data.total.amount"')
    problem: str


class Problem(BaseModel):
    error: str = Field(description="which check failed: body_too_large, signature, "
                                   "rate_limited, malformed, invalid, forbidden")
    detail: str
    fields: list[FieldProblem] = Field(default_factory=list)


class EventAccepted(BaseModel):
    id: str
    type: str
    duplicate: bool = Field(description="the event was accepted before (a retry)")
    incident_ids: list[str]


class EventsAccepted(BaseModel):
    events: list[EventAccepted]
    incident_ids: list[str] = Field(description="every incident the events led to")


class IncidentAccepted(BaseModel):
    incident_id: str
    duplicate: bool = Field(description="the incident was known before")


class Rejected(Exception):  # noqa: N818 - it is an answer, not a failure
    def __init__(self, status: int, error: str, detail: str,
                 fields: list[FieldProblem] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.problem = Problem(error=error, detail=detail, fields=fields or [])
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse(self.problem.model_dump(), status_code=self.status,
                            headers=self.headers)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected = Counter("amends_intake_http_rejected_total",
                                "Requests to intake's API that were refused",
                                ["source", "error"], registry=registry)


def _problems(prefix: str, exc: ValidationError, raw: Any) -> list[FieldProblem]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        if err["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            out.append(FieldProblem(field=f"{prefix}type", problem=unknown_type(raw)))
            continue
        loc = [str(p) for p in err["loc"]]
        if loc and "." in loc[0] and len(loc) > 1:  # the tagged union's tag comes first
            loc = loc[1:]
        out.append(FieldProblem(field=prefix + (".".join(loc) or "(body)"),
                                problem=err["msg"]))
    return out


class Gate:
    """The checks every request passes before it is processed."""

    def __init__(self, settings: IntakeSettings, clock: Clock, metrics: HttpMetrics) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.verifier = Verifier(settings.hmac_secrets, clock,
                                 settings.signature_tolerance_seconds)
        self.buckets: dict[str, TokenBucket] = {}
        for name in settings.hmac_secrets:
            if name not in settings.sources:
                log.warning("HTTP source %s has a secret but no entry in the sources setting: "
                            "it may send nothing", name)

    def policy(self, source: str) -> SourcePolicy:
        return self.settings.sources.get(source, _NO_SOURCE)

    def reject(self, source: str, exc: Rejected) -> Rejected:
        self.metrics.rejected.labels(source, exc.problem.error).inc()
        return exc

    async def admit(self, request: Request, source: str | None,
                    signature: str | None) -> tuple[str, bytes]:
        """The authenticated source and the raw body, or `Rejected`."""
        known = source if source in self.settings.hmac_secrets else "unknown"
        cap = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        too_large = Rejected(413, "body_too_large", f"the body is larger than {cap} bytes")
        if declared.isdigit() and int(declared) > cap:
            raise self.reject(known, too_large)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise self.reject(known, too_large)
        try:
            name = self.verifier.verify(source, signature, bytes(body))
        except SignatureError as exc:
            raise self.reject(known, Rejected(401, "signature", str(exc))) from None
        policy = self.policy(name)
        bucket = self.buckets.get(name)
        if bucket is None:
            bucket = self.buckets[name] = TokenBucket(policy.rate_per_second, policy.burst,
                                                      self.clock)
        wait = bucket.take()
        if wait > 0:
            raise self.reject(name, Rejected(
                429, "rate_limited",
                f"source {name} is limited to {policy.rate_per_second:g} requests/s "
                f"(bursts of {policy.burst})", headers={"Retry-After": retry_after(wait)}))
        return name, bytes(body)

    def json(self, source: str, body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise self.reject(source, Rejected(400, "malformed",
                                               f"the body is not JSON: {exc}")) from None

    def events(self, source: str, body: bytes) -> list[UpstreamEvent]:
        parsed = self.json(source, body)
        items = parsed if isinstance(parsed, list) else [parsed]
        single = not isinstance(parsed, list)
        limit = self.settings.max_batch_events
        if not items or len(items) > limit:
            raise self.reject(source, Rejected(422, "invalid", "invalid body", [FieldProblem(
                field="(body)", problem=f"a batch holds 1 to {limit} events")]))
        events: list[UpstreamEvent] = []
        problems: list[FieldProblem] = []
        for index, item in enumerate(items):
            prefix = "" if single else f"[{index}]."
            if not isinstance(item, dict):
                problems.append(FieldProblem(field=prefix.rstrip(".") or "(body)",
                                             problem="must be a CloudEvent (a JSON object)"))
                continue
            try:
                events.append(upstream_event_adapter.validate_json(
                    json.dumps(item), strict=True, context=INPUT_CONTEXT))
            except ValidationError as exc:
                problems.extend(_problems(prefix, exc, item))
        if problems:
            raise self.reject(source, Rejected(422, "invalid", "invalid events", problems))
        policy = self.policy(source)
        forbidden = []
        for index, event in enumerate(events):
            prefix = "" if single else f"[{index}]."
            if not policy.allows_type(event.type):
                forbidden.append(FieldProblem(
                    field=f"{prefix}type",
                    problem=f"source {source} may not send {event.type} events"))
            if not policy.allows_tenant(event.tenant):
                forbidden.append(FieldProblem(
                    field=f"{prefix}tenant",
                    problem=f"source {source} may not send events "
                            + (f"for tenant {event.tenant}" if event.tenant else
                               "without a tenant")))
        if forbidden:
            raise self.reject(source, Rejected(403, "forbidden", "not allowed for this source",
                                               forbidden))
        return events

    def report(self, source: str, body: bytes) -> IncidentReport:
        parsed = self.json(source, body)
        try:
            report = IncidentReport.model_validate_json(json.dumps(parsed), strict=True,
                                                        context=INPUT_CONTEXT)
        except ValidationError as exc:
            raise self.reject(source, Rejected(422, "invalid", "invalid report",
                                               _problems("", exc, parsed))) from None
        policy = self.policy(source)
        forbidden = []
        if not policy.report_incidents:
            forbidden.append(FieldProblem(field="(body)",
                                          problem=f"source {source} may not report incidents"))
        if not policy.allows_tenant(report.tenant):
            forbidden.append(FieldProblem(field="tenant", problem=(
                f"source {source} may not report for tenant {report.tenant}" if report.tenant
                else f"source {source} may not report without a tenant")))
        if forbidden:
            raise self.reject(source, Rejected(403, "forbidden", "not allowed for this source",
                                               forbidden))
        return report


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": description} for status, description in (
        (400, "the body is not JSON"),
        (401, "the source or its signature is missing, unknown, stale or wrong"),
        (403, "the source may not send this event type or tenant"),
        (413, "the body is larger than the cap"),
        (422, "the events do not follow the contract: each bad field and why"),
        (429, "the source sent too many requests; see Retry-After"),
    )
}

SourceHeader = Annotated[str | None, Header(
    alias=SOURCE_HEADER, description="the sending source, as configured")]
SignatureHeader = Annotated[str | None, Header(
    alias=SIGNATURE_HEADER,
    description='"t=<unix seconds>,v1=<hex HMAC-SHA256 of \'<t>.<raw body>\'>"')]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    content = {"schema": schema}
    return {"requestBody": {"required": True, "content": {
        "application/json": content, "application/cloudevents+json": content}}}


def router(service: IntakeService, settings: IntakeSettings, clock: Clock,
           registry: CollectorRegistry) -> APIRouter:
    gate = Gate(settings, clock, HttpMetrics(registry))
    api = APIRouter(prefix="/v1", tags=["intake"])
    event_ref = {"$ref": "#/components/schemas/UpstreamEvent"}

    @api.post("/events", status_code=202, response_model=EventsAccepted, responses=_ERRORS,
              summary="Upstream events: one CloudEvent or a batch (the same JSON as on Kafka)",
              openapi_extra=_body({"oneOf": [event_ref, {
                  "type": "array", "items": event_ref, "minItems": 1,
                  "maxItems": settings.max_batch_events}]}))
    async def post_events(request: Request, source: SourceHeader = None,
                          signature: SignatureHeader = None) -> Any:
        try:
            name, body = await gate.admit(request, source, signature)
            events = gate.events(name, body)
        except Rejected as exc:
            return exc.response()
        accepted = await service.accept(events)
        every = list(dict.fromkeys(i for _, _, ids in accepted for i in ids))
        return EventsAccepted(
            events=[EventAccepted(id=e.id, type=e.type, duplicate=dup, incident_ids=ids)
                    for e, dup, ids in accepted],
            incident_ids=every)

    @api.post("/incidents", status_code=202, response_model=IncidentAccepted,
              responses=_ERRORS, summary="An incident reported directly, e.g. by an agent",
              openapi_extra=_body({"$ref": "#/components/schemas/IncidentReport"}))
    async def post_incident(request: Request, source: SourceHeader = None,
                            signature: SignatureHeader = None) -> Any:
        try:
            name, body = await gate.admit(request, source, signature)
            report = gate.report(name, body)
        except Rejected as exc:
            return exc.response()
        incident, new = await service.report(report, name)
        return IncidentAccepted(incident_id=incident.incident_id, duplicate=not new)

    return api


def _schemas() -> dict[str, Any]:
    """The request bodies' JSON Schemas, as OpenAPI components."""
    ref = "#/components/schemas/{model}"
    found: dict[str, Any] = {}
    for name, adapter in (("UpstreamEvent", upstream_event_adapter),
                          ("IncidentReport", TypeAdapter(IncidentReport))):
        schema = adapter.json_schema(ref_template=ref, mode="validation")
        found.update(schema.pop("$defs", {}))
        found[name] = schema
    return found


def install_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Serve an OpenAPI document that includes the request bodies read from the raw body."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version,
                                   description=app.description, routes=app.routes)
            document.setdefault("components", {}).setdefault("schemas", {}).update(_schemas())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi
