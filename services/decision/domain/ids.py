"""Deterministic ids on the engine's hot path: the same text as `schemas.common.deterministic_id`
(a UUIDv5 in Amends' namespace), computed with one SHA-1 and no `uuid.UUID` object."""

from __future__ import annotations

from hashlib import sha1

from schemas.common import AMENDS_NAMESPACE

_NAMESPACE = AMENDS_NAMESPACE.bytes
# The hex digit at the variant's place, by the digest's digit there: RFC 4122 keeps its two
# low bits and sets the two high ones to 10.
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def deterministic_id(kind: str, *parts: str) -> str:
    """Equal to `schemas.common.deterministic_id(kind, *parts)` (a unit test checks it)."""
    return _shown(sha1(_NAMESPACE + "\x1f".join((kind, *parts)).encode(),
                       usedforsecurity=False).hexdigest())


def _shown(h: str) -> str:
    """A SHA-1 in hex as the UUIDv5 it makes."""
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_DECISION = _NAMESPACE + b"decision\x1f"  # what every decision id's hash starts with


def decision_id(incident_id: str) -> str:
    """Equal to `schemas.decision.decision_id(incident_id)`: `deterministic_id("decision",
    incident_id)`, the hash of its constant start taken once."""
    digest = _DECISION_HASH.copy()
    digest.update(incident_id.encode())
    return _shown(digest.hexdigest())


_DECISION_HASH = sha1(_DECISION, usedforsecurity=False)
