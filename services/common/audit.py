"""Recording a human action: an append-only entry in the service's own audit store, then an
event on the audit topic (`amends.audit.v1`), the trail `amends audit` reads."""

from __future__ import annotations

from typing import Any

from schemas.audit import AuditAction, AuditEntry, AuditRecorded
from schemas.common import deterministic_id
from services.common.access import Principal
from services.common.clock import Clock
from services.common.messaging import Publisher, outgoing
from services.common.outbox import Outbox, record_then_publish


class AuditTrail:
    def __init__(self, service: str, entries: Outbox[AuditEntry], publisher: Publisher,
                 topic: str, clock: Clock) -> None:
        self.service = service
        self.entries = entries
        self.publisher = publisher
        self.topic = topic
        self.clock = clock

    async def record(self, principal: Principal, action: AuditAction, target: str, *,
                     customer_id: str | None = None, reason: str = "",
                     before: dict[str, Any] | None = None,
                     after: dict[str, Any] | None = None, key: str | None = None,
                     tenant: str | None = None) -> AuditEntry:
        """Record one action. `key` names the action for idempotency (e.g. a decision's
        revision): recording the same key again is one entry."""
        now = self.clock()
        audit_id = deterministic_id("audit", self.service, action.value, target,
                                    principal.subject, key or now.isoformat())
        entry = AuditEntry(
            audit_id=audit_id, action=action, actor=principal.subject,
            actor_via=principal.via, roles=sorted(r.name for r in principal.roles),
            tenant=tenant or principal.tenant, address=principal.address, at=now,
            service=self.service, target=target, customer_id=customer_id, reason=reason,
            before=before or {}, after=after or {})
        event = AuditRecorded(id=audit_id, source=f"amends/{self.service}", time=now,
                              subject=customer_id or target, data=entry)
        await record_then_publish(self.entries, self.publisher,
                                  [(audit_id, entry, outgoing(self.topic, event))])
        return entry
