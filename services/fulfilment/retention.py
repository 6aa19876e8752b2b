"""What fulfilment keeps and for how long (`services/common/retention.py`): (kind,
collection, time field). Messages (recipients and bodies) go first; the effects that moved
money or value are money records."""

RETENTION = (
    ("messages", "messages", "created_at"),
    ("money", "decisions", "created_at"),
    ("money", "points_ledger", "created_at"),
    ("money", "refunds", "created_at"),
    ("money", "perks", "created_at"),
    ("money", "tasks", "created_at"),
    ("money", "outcomes", "created_at"),
    ("money", "vouchers", "issued_at"),
    ("audit", "audit", "at"),
)
