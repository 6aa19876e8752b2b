"""Who is calling an operator endpoint: a bearer token verified as a JWT (the company's OIDC
issuer, by its JWKS URL or a static key) or an API key for scripts; their roles and tenant;
and the 401 and 403 answers, each with a problem body naming the check that failed.

Roles are ordered: a `reviewer` may do what a `support` agent may, and so on up to `admin`.
A principal acts in one tenant, or in every tenant (`*`); records without a tenant belong to
the default tenant (`auth_default_tenant`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import jwt
import jwt.types
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, SecretStr, TypeAdapter, field_validator

log = logging.getLogger(__name__)

API_KEY_PREFIX = "amk_"
EVERY_TENANT = "*"
PROBLEM_JSON = "application/problem+json"


class Role(IntEnum):
    viewer = 1
    support = 2
    reviewer = 3
    admin = 4


class ApiKey(BaseModel):
    """An API key as the services know it: its SHA-256, never the key itself."""

    name: str = Field(min_length=1, max_length=128, description="recorded as the actor")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    roles: list[Role] = Field(min_length=1)
    tenant: str = Field(default=EVERY_TENANT, min_length=1, max_length=128)

    @field_validator("roles", mode="before")
    @classmethod
    def _roles_by_name(cls, value: Any) -> Any:
        """Roles by name (`admin`), as a person writes them in a keys file or chart values,
        or by number."""
        if isinstance(value, list):
            return [Role[v] if isinstance(v, str) and v in Role.__members__ else v
                    for v in value]
        return value


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[Role]
    tenant: str
    via: Literal["jwt", "api_key", "cli"]
    address: str | None = None

    @property
    def role(self) -> Role | None:
        return max(self.roles) if self.roles else None

    def has(self, role: Role) -> bool:
        return self.role is not None and self.role >= role

    def sees(self, tenant: str | None, default_tenant: str) -> bool:
        return self.tenant in (EVERY_TENANT, tenant or default_tenant)


class AccessDeniedError(Exception):
    """A refused request: 401 when the caller is unknown, 403 when known but not allowed.
    `check` names what failed: credentials, token, api_key, role or tenant."""

    def __init__(self, status: Literal[401, 403], check: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.check = check
        self.detail = detail


def problem(status: int, check: str, detail: str) -> JSONResponse:
    title = {401: "Unauthenticated", 403: "Forbidden"}.get(status, "Refused")
    headers = {"WWW-Authenticate": 'Bearer realm="amends"'} if status == 401 else None
    return JSONResponse({"type": f"urn:amends:problem:{check}", "title": title,
                         "status": status, "check": check, "detail": detail},
                        status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handler(app: FastAPI) -> None:
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AccessDeniedError)
        return problem(exc.status, exc.check, exc.detail)

    app.add_exception_handler(AccessDeniedError, refused)


class AuthSettings(BaseModel):
    """The operator authentication part of every service's settings."""

    jwt_key: SecretStr | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    roles_claim: str = "roles"
    tenant_claim: str = "tenant"
    subject_claim: str = "sub"
    api_keys: list[ApiKey] = Field(default_factory=list)
    api_keys_file: Path | None = None
    default_tenant: str = "default"
    jwks_cache_s: float = 300.0


_KEYS = TypeAdapter(list[ApiKey])


def load_api_keys(settings: AuthSettings) -> list[ApiKey]:
    keys = list(settings.api_keys)
    if settings.api_keys_file is not None:
        keys += _KEYS.validate_json(settings.api_keys_file.read_bytes())
    return keys


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested claims (Keycloak's
    `realm_access.roles`)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


JwksFetch = Callable[[str], Awaitable[dict[str, Any]]]


async def _fetch_jwks(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(url)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document


class Authenticator:
    """Turns an `Authorization` header (or `X-API-Key`) into a `Principal`."""

    def __init__(self, settings: AuthSettings, *, fetch_jwks: JwksFetch = _fetch_jwks,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._keys = {key.sha256: key for key in load_api_keys(settings)}
        self._fetch_jwks = fetch_jwks
        self._clock = clock
        self._jwks: dict[str, jwt.PyJWK] = {}
        self._jwks_at = float("-inf")
        self._jwks_lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        s = self.settings
        return bool(self._keys or s.jwt_key is not None or s.jwks_url)

    async def authenticate(self, headers: Mapping[str, str],
                           address: str | None = None) -> Principal:
        api_key = headers.get("x-api-key")
        authorization = headers.get("authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AccessDeniedError(401, "credentials",
                                        "the Authorization header must be 'Bearer <token>'")
            token = token.strip()
            if token.startswith(API_KEY_PREFIX):
                return self._by_key(token, address)
            return await self._by_jwt(token, address)
        if api_key:
            return self._by_key(api_key, address)
        raise AccessDeniedError(401, "credentials", "no credentials: send 'Authorization: "
                                "Bearer <token>' (a JWT or an API key)")

    def _by_key(self, key: str, address: str | None) -> Principal:
        digest = key_digest(key)
        # Compared in constant time against each known digest.
        found = next((k for d, k in self._keys.items() if hmac.compare_digest(d, digest)), None)
        if found is None:
            raise AccessDeniedError(401, "api_key", "the API key is not known")
        return Principal(found.name, frozenset(found.roles), found.tenant, "api_key", address)

    async def _by_jwt(self, token: str, address: str | None) -> Principal:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AccessDeniedError(401, "token", f"the token is not a JWT: {exc}") from None
        key: Any
        algorithms: list[str]
        if s.jwks_url:
            jwk = await self._jwk(str(header.get("kid", "")))
            key, algorithms = jwk.key, [jwk.algorithm_name]
        elif s.jwt_key is not None:
            secret = s.jwt_key.get_secret_value()
            if secret.lstrip().startswith("-----BEGIN"):
                key, algorithms = secret, ["RS256", "RS384", "RS512", "ES256", "ES384",
                                           "PS256", "EdDSA"]
            else:
                key, algorithms = secret, ["HS256", "HS384", "HS512"]
        else:
            raise AccessDeniedError(401, "token", "this service accepts no JWTs (no issuer "
                                    "key is configured); use an API key")
        options: jwt.types.Options = {"require": ["exp", s.subject_claim],
                                      "verify_aud": s.audience is not None}
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=algorithms, audience=s.audience, issuer=s.issuer,
                options=options, leeway=30)
        except jwt.ExpiredSignatureError:
            raise AccessDeniedError(401, "token", "the token has expired") from None
        except jwt.PyJWTError as exc:
            raise AccessDeniedError(401, "token", f"the token is refused: {exc}") from None
        return self._principal(claims, address)

    def _principal(self, claims: Mapping[str, Any], address: str | None) -> Principal:
        s = self.settings
        raw = _claim(claims, s.roles_claim)
        names = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles = frozenset(Role[n] for n in names if isinstance(n, str) and n in Role.__members__)
        tenant = _claim(claims, s.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise AccessDeniedError(403, "tenant",
                                    f"the token has no '{s.tenant_claim}' claim")
        return Principal(str(_claim(claims, s.subject_claim)), roles, tenant, "jwt", address)

    async def _jwk(self, kid: str) -> jwt.PyJWK:
        fresh = self._clock() - self._jwks_at < self.settings.jwks_cache_s
        if kid not in self._jwks or not fresh:
            async with self._jwks_lock:
                # A key we do not know is fetched again, at most every 10 s (key rotation).
                if self._clock() - self._jwks_at >= min(10.0, self.settings.jwks_cache_s):
                    await self._load_jwks()
        jwk = self._jwks.get(kid)
        if jwk is None:
            raise AccessDeniedError(401, "token", f"the issuer has no signing key {kid!r}")
        return jwk

    async def _load_jwks(self) -> None:
        assert self.settings.jwks_url
        try:
            document = await self._fetch_jwks(self.settings.jwks_url)
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            log.warning("could not fetch the issuer's keys: %s", type(exc).__name__)
            if not self._jwks:
                raise AccessDeniedError(401, "token", "the issuer's keys cannot be fetched"
                                        ) from None
            return
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []):
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type this library cannot verify with
        self._jwks, self._jwks_at = keys, self._clock()

    def require(self, principal: Principal, role: Role) -> None:
        if not principal.has(role):
            held = principal.role.name if principal.role else "none"
            raise AccessDeniedError(403, "role", f"this needs the role {role.name} or higher; "
                                    f"{principal.subject} has {held}")

    def require_tenant(self, principal: Principal, tenant: str | None) -> None:
        wanted = tenant or self.settings.default_tenant
        if not principal.sees(tenant, self.settings.default_tenant):
            raise AccessDeniedError(403, "tenant", f"{principal.subject} acts for tenant "
                                    f"{principal.tenant}, not {wanted}")

    def tenants(self, principal: Principal) -> Sequence[str | None] | None:
        """The tenant values a query must be limited to; None when every tenant is seen.
        The default tenant also matches records without a tenant."""
        if principal.tenant == EVERY_TENANT:
            return None
        if principal.tenant == self.settings.default_tenant:
            return [principal.tenant, None]
        return [principal.tenant]


# Declares the scheme in the OpenAPI document; the check itself is `Authenticator`'s.
_BEARER = HTTPBearer(auto_error=False, description="a JWT from the issuer, or an API key")


def operator(authenticator: Authenticator,
             role: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the authenticated principal holding at least `role`, else 401
    or 403."""

    async def dependency(
            request: Request,
            _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> Principal:
        address = request.client.host if request.client else None
        principal = await authenticator.authenticate(request.headers, address)
        authenticator.require(principal, role)
        request.state.principal = principal
        return principal

    return dependency
