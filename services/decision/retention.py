"""What decision keeps and for how long (`services/common/retention.py`): (kind,
collection, time field). Decisions and what settles them are money records. The marks
`incidents_seen` (and `customers_decided`, no longer written) carry no time: a missing mark
is taken as proof that nothing was decided, so they stay as long as the decisions do; so
does the budget's ledger, whose entries chain per day."""

RETENTION = (
    ("money", "decisions", "decided_at"),
    ("money", "revisions", "decided_at"),
    ("money", "reviews", "at"),
    ("money", "choices", "at"),
    ("money", "outcomes", "at"),
    ("money", "outage_previews", "previewed_at"),
    ("money", "outage_ledger", "at"),
    ("audit", "audit", "at"),
    # Public replies to negative reviews (ADR 0017): working records, not money.
    ("records", "public_replies", "review_posted_at"),
    ("records", "public_reply_steps", "at"),
)
