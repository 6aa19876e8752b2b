"""Which contract travels on which topic: the single map the generated documents come from."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from schemas import topics
from schemas.audit import AuditRecorded
from schemas.deadletter import MessageDeadLettered
from schemas.decision import DecisionMade
from schemas.erasure import ErasureRequested
from schemas.fairness import FairnessFlagged
from schemas.incident import IncidentDetected
from schemas.outage import OutageCostPreviewed
from schemas.outcome import OutcomeRecorded
from schemas.status_post import StatusPostReleased
from schemas.task import TaskCreated
from schemas.upstream import UpstreamEvent

# name of the generated JSON Schema -> the model
CONTRACTS: dict[str, Any] = {
    "upstream-event": UpstreamEvent,
    "incident-detected": IncidentDetected,
    "decision-made": DecisionMade,
    "outcome-recorded": OutcomeRecorded,
    "message-deadlettered": MessageDeadLettered,
    "task-created": TaskCreated,
    "audit-recorded": AuditRecorded,
    "erasure-requested": ErasureRequested,
    "status-post-released": StatusPostReleased,
    "outage-cost-previewed": OutageCostPreviewed,
    "fairness-flagged": FairnessFlagged,
}

# default topic -> the contract name of what travels on it
TOPIC_CONTRACTS: dict[str, str] = {
    topics.ORDERS: "upstream-event",
    topics.SUPPORT: "upstream-event",
    topics.PAYMENTS: "upstream-event",
    topics.OUTAGES: "upstream-event",
    topics.INCIDENTS: "incident-detected",
    topics.DECISIONS: "decision-made",
    topics.OUTCOMES: "outcome-recorded",
    topics.TASKS: "task-created",
    topics.DEADLETTER: "message-deadlettered",
    topics.AUDIT: "audit-recorded",
    topics.ERASURES: "erasure-requested",
    topics.STATUS_POSTS: "status-post-released",
    topics.OUTAGE_PREVIEWS: "outage-cost-previewed",
    topics.FINDINGS: "fairness-flagged",
}


def json_schema(name: str) -> dict[str, Any]:
    schema = TypeAdapter(CONTRACTS[name]).json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://amends.dev/schemas/{name}.schema.json"
    return schema
