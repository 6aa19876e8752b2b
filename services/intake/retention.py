"""What intake keeps and for how long (`services/common/retention.py`): (kind, collection,
time field). Pending checks are deleted when they run; the published marks of incidents
carry no time and stay."""

RETENTION = (
    ("receipts", "received", "received_at"),  # receipts of events posted over HTTP
    ("receipts", "received", "at"),  # claims on them
    ("marks", "settled", "at"),
    ("marks", "customers_seen", "hour"),
    ("records", "incidents", "detected_at"),
    ("records", "outages", "declared_at"),
    # The aftermath of incidents (ADR 0013): FerretDB's two collections, MongoDB's one.
    ("records", "followed", "occurred_at"),
    ("records", "aftermath_facts", "occurred_at"),
    ("records", "aftermath", "occurred_at"),
    ("money", "charges", "captured_at"),
    ("audit", "audit", "at"),
)
