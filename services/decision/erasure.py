"""The admin API of erasure: `POST /v1/customers/{customer_id}/erasure` asks every service
to erase a customer's personal data (`amends.erasures.v1`) and records who asked in the
audit trail. Each service reports what it touched on the audit topic (`amends customer
erase` waits for the three reports)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from schemas.audit import AuditAction
from schemas.erasure import ErasureRequest, ErasureRequested, erasure_id, erasure_target
from services.common.access import EVERY_TENANT, Principal, Role, operator, problem
from services.common.app import Runtime
from services.common.audit import AuditTrail
from services.common.erasure import Pseudonyms
from services.common.messaging import outgoing

CustomerId = Annotated[str, Path(min_length=1, max_length=128)]
SERVICES = ("intake", "decision", "fulfilment")


class ErasureBody(BaseModel):
    tenant: str | None = Field(
        default=None, min_length=1, max_length=128,
        description="the customer's tenant (default: the operator's own, or the default "
                    "tenant for an operator of every tenant)")
    reason: str = Field(min_length=1, max_length=1000,
                        description="the ticket or legal basis (no personal data)")


class ErasureAccepted(BaseModel):
    erasure_id: str
    tenant: str
    requested_at: str
    reports_from: list[str] = Field(description="the services that report on the audit "
                                                "topic, target `erasure:<erasure_id>`")


def router(runtime: Runtime, trail: AuditTrail) -> APIRouter:
    settings = runtime.settings
    pseudonyms = Pseudonyms(settings.erasure_pseudonym_key)
    api = APIRouter(prefix="/v1", tags=["erasure"])
    admin = Depends(operator(runtime.access, Role.admin))

    @api.post("/customers/{customer_id}/erasure", status_code=202,
              response_model=ErasureAccepted,
              responses={401: {"description": "no or bad credentials"},
                         403: {"description": "not an admin of the customer's tenant"},
                         503: {"description": "no pseudonym key is configured"}})
    async def request_erasure(customer_id: CustomerId, body: ErasureBody,
                              principal: Principal = admin,
                              ) -> ErasureAccepted | JSONResponse:
        tenant = body.tenant or (principal.tenant if principal.tenant != EVERY_TENANT
                                 else settings.auth_default_tenant)
        runtime.access.require_tenant(principal, tenant)
        if settings.erasure_pseudonym_key is None:
            return problem(503, "erasure_key", "erasure_pseudonym_key is not configured: "
                           "the money records would keep no owner, or a reversible one")
        now = runtime.clock()
        request = ErasureRequest(erasure_id=erasure_id(customer_id, tenant, now),
                                 customer_id=customer_id, tenant=tenant,
                                 requested_by=principal.subject, requested_at=now,
                                 reason=body.reason)
        # Recorded before it is published: a retry records the same entry once.
        await trail.record(principal, AuditAction.erasure, erasure_target(request.erasure_id),
                           customer_id=pseudonyms.of(customer_id), reason=body.reason,
                           after={"phase": "requested"}, key="requested", tenant=tenant)
        event = ErasureRequested(id=request.erasure_id, source="amends/decision", time=now,
                                 subject=customer_id, tenant=tenant, data=request)
        await runtime.publisher.publish_all([outgoing(settings.erasures_topic, event)])
        return ErasureAccepted(erasure_id=request.erasure_id, tenant=tenant,
                               requested_at=now.isoformat(), reports_from=list(SERVICES))

    return api
