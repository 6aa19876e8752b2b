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
    ("money", "charges", "captured_at"),
    ("audit", "audit", "at"),
)
