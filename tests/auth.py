"""Operator credentials for tests: one API key per role, for every tenant or for one, and
the customer-link key the services of a test share."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import SecretStr

from services.common.access import EVERY_TENANT, ApiKey, Role, key_digest, new_api_key

LINK_KEY_ID = "test-1"
# The key of erased customers' pseudonyms, the same in every service of a test.
PSEUDONYM_KEY = SecretStr("pseudonym-key-for-tests-00000001")
# Tenants the keys are made for; any other tenant has no key.
TENANTS = (EVERY_TENANT, "default", "shop-a", "shop-b")


@cache
def _key(role: Role, tenant: str, subject: str) -> str:
    return new_api_key()


def _subject(role: Role, tenant: str, who: int) -> str:
    return f"{role.name}-{'all' if tenant == EVERY_TENANT else tenant}-{who}"


def api_keys() -> list[ApiKey]:
    """Two people per role and tenant (four-eyes needs two different reviewers)."""
    return [ApiKey(name=_subject(role, tenant, who),
                   sha256=key_digest(_key(role, tenant, _subject(role, tenant, who))),
                   roles=[role], tenant=tenant)
            for role in Role for tenant in TENANTS for who in (1, 2)]


def headers(role: Role = Role.admin, tenant: str = EVERY_TENANT, who: int = 1
            ) -> dict[str, str]:
    """The headers of an operator with `role` in `tenant` (`who` picks one of two people)."""
    subject = _subject(role, tenant, who)
    return {"Authorization": f"Bearer {_key(role, tenant, subject)}"}


def subject(role: Role = Role.admin, tenant: str = EVERY_TENANT, who: int = 1) -> str:
    return _subject(role, tenant, who)


def settings() -> dict[str, Any]:
    """Settings every service of a test takes: the keys above, the link key and the
    pseudonym key."""
    return {"auth_api_keys": api_keys(),
            "customer_link_keys": {LINK_KEY_ID: SecretStr("customer-link-key-for-tests-0001")},
            "erasure_pseudonym_key": PSEUDONYM_KEY}
