"""Customer links: a signed, expiring token naming one customer and one decision, carried in
every message that offers a choice or shows what the customer got. Signed with HMAC under a
key id (`kid`) so keys can rotate: the newest key signs, every listed key verifies.

The token is a compact JWT (HS256) with audience `amends:customer`; it is never logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from pydantic import SecretStr

from services.common.access import AccessDeniedError

AUDIENCE = "amends:customer"


@dataclass(frozen=True)
class CustomerGrant:
    customer_id: str
    decision_id: str
    expires_at: datetime


class CustomerLinks:
    def __init__(self, keys: Mapping[str, SecretStr], signing_kid: str | None,
                 ttl: timedelta) -> None:
        self.keys = {kid: key.get_secret_value() for kid, key in keys.items()}
        self.signing_kid = signing_kid or (max(self.keys) if self.keys else None)
        if self.signing_kid is not None and self.signing_kid not in self.keys:
            raise ValueError(f"customer_link_kid: no key {self.signing_kid!r} in "
                             "customer_link_keys")
        self.ttl = ttl

    @property
    def enabled(self) -> bool:
        return self.signing_kid is not None

    def sign(self, customer_id: str, decision_id: str, now: datetime) -> str:
        if self.signing_kid is None:
            raise ValueError("customer_link_keys: no key to sign customer links with")
        claims = {"sub": customer_id, "dec": decision_id, "aud": AUDIENCE,
                  "iat": int(now.timestamp()), "exp": int((now + self.ttl).timestamp())}
        return jwt.encode(claims, self.keys[self.signing_kid], algorithm="HS256",
                          headers={"kid": self.signing_kid})

    def verify(self, token: str, decision_id: str, now: datetime) -> CustomerGrant:
        """The grant in `token` if it is genuine, unexpired at `now` and for `decision_id`;
        else 401 (forged, expired) or 403 (another decision's)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise AccessDeniedError(401, "link", "the link's token is malformed") from None
        key = self.keys.get(str(kid))
        if key is None:
            raise AccessDeniedError(401, "link", "the link was signed with a key this service "
                                    "does not hold")
        try:
            # Expiry is checked against the injected clock, not the machine's.
            claims = jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE,
                                options={"require": ["sub", "dec", "exp"],
                                         "verify_exp": False, "verify_iat": False,
                                         "verify_nbf": False})
        except jwt.PyJWTError:
            raise AccessDeniedError(401, "link", "the link's signature does not match"
                                    ) from None
        expires = datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo)
        if now >= expires:
            raise AccessDeniedError(401, "link_expired", "the link has expired")
        if claims["dec"] != decision_id:
            raise AccessDeniedError(403, "link_decision",
                                    "the link was issued for another decision")
        return CustomerGrant(str(claims["sub"]), decision_id, expires)
