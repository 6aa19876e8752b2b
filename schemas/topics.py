"""Default topic names: the public contract (each is configurable in the services' settings)."""

ORDERS = "upstream.orders.v1"
SUPPORT = "upstream.support.v1"
PAYMENTS = "upstream.payments.v1"
OUTAGES = "upstream.outages.v1"
INCIDENTS = "amends.incidents.v1"
DECISIONS = "amends.decisions.v1"
OUTCOMES = "amends.outcomes.v1"
TASKS = "amends.tasks.v1"
DEADLETTER = "amends.deadletter.v1"
AUDIT = "amends.audit.v1"
ERASURES = "amends.erasures.v1"
STATUS_POSTS = "amends.status-posts.v1"
OUTAGE_PREVIEWS = "amends.outages.v1"  # decision: each outage's cost preview
FINDINGS = "amends.findings.v1"

DEFAULT_PARTITIONS = 6
