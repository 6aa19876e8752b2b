"""Readable validation errors: each names the field and the problem."""

from __future__ import annotations

from pydantic import ValidationError


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """The errors of a validation as `{"field": "data.total.amount", "problem": "..."}`."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in err["loc"]]
        # A tagged union puts the tag first (e.g. "order.delivered"); the field path follows.
        if loc and "." in loc[0] and len(loc) > 1:
            loc = loc[1:]
        out.append({"field": ".".join(loc) or "(message)", "problem": err["msg"]})
    return out


def describe(exc: ValidationError) -> str:
    """One line naming every bad field and why."""
    return "; ".join(f"{e['field']}: {e['problem']}" for e in field_errors(exc))


class TransientError(Exception):
    """Raised by a handler for a condition that passes by itself (contention on a shared
    record): its batch is redelivered after a pause, and nothing is dead-lettered for it."""
