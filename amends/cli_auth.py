"""The operator's credentials for every `amends` command that acts on the services: where they
come from, how they are sent, and what a refusal looks like.

In order: `AMENDS_TOKEN` (a JWT from the company's issuer, or an API key `amk_...`); the
config file (`AMENDS_CONFIG`, default `~/.config/amends/config.toml`: `token`,
`decision_url`, `fulfilment_url`), refused when others may read it; else the local stack's dev
key (written by `make up`; where, `amends.dev_key` says). The services' URLs come from the
environment (`AMENDS_DECISION_URL`, `AMENDS_FULFILMENT_URL`), then the file, then the local
defaults.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from amends import dev_key
from services.common.access import EVERY_TENANT, Role

console = Console(width=None if Console().is_terminal else 140)
errors = Console(stderr=True)  # warnings stay out of output meant for pipes (--json)

DEFAULT_CONFIG = Path("~/.config/amends/config.toml")
DEFAULT_URLS = {"decision": "http://127.0.0.1:8002", "fulfilment": "http://127.0.0.1:8003"}
Service = Literal["decision", "fulfilment"]


class CredentialsError(Exception):
    """Credentials that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class Credentials:
    token: str | None
    source: str  # where the token came from, shown when it is refused
    urls: dict[str, str]


def _config_path() -> Path:
    return Path(os.environ.get("AMENDS_CONFIG") or DEFAULT_CONFIG).expanduser()


def _read_config(path: Path) -> dict[str, Any]:
    """The config file's settings; it holds a secret, so one that others may read (or
    write) is refused rather than used."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}) "
                               f"and holds a token: run `chmod 600 {path}`")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"{path} is not valid TOML: {exc}") from None


def load() -> Credentials:
    config_path = _config_path()
    config = _read_config(config_path)
    urls = {name: os.environ.get(f"AMENDS_{name.upper()}_URL") or str(
        config.get(f"{name}_url") or default) for name, default in DEFAULT_URLS.items()}
    if token := os.environ.get("AMENDS_TOKEN", "").strip():
        return Credentials(token, "AMENDS_TOKEN", urls)
    if token := str(config.get("token") or "").strip():
        return Credentials(token, str(config_path), urls)
    dev = dev_key.dev_key_file()
    # The dev key is for the local stack's services only: never sent to another host.
    if dev.exists() and all(_loopback(url) for url in urls.values()):
        return Credentials(dev.read_text().strip(), f"the local stack's dev key ({dev})", urls)
    return Credentials(None, "nowhere", urls)


def _loopback(url: str) -> bool:
    host = httpx.URL(url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Identity:
    """Who the services take the caller for (decision's `GET /v1/whoami`)."""

    subject: str
    roles: frozenset[Role]
    tenant: str
    via: str

    @property
    def role(self) -> Role | None:
        return max(self.roles) if self.roles else None


def _role(value: Any) -> Role | None:
    if isinstance(value, int) and value in Role._value2member_map_:
        return Role(value)
    if isinstance(value, str) and value in Role.__members__:
        return Role[value]
    return None


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _refusal(response: httpx.Response) -> str:
    """A refusal in one line: a problem body's check and detail, FastAPI's detail, or the
    text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "check" in body:
        return f"check {body['check']}: {body.get('detail', '')}"
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return response.text[:500]


class Operator:
    """Calls the services' operator APIs with the caller's credentials."""

    def __init__(self, credentials: Credentials | None = None) -> None:
        try:
            self.credentials = credentials or load()
        except CredentialsError as exc:
            raise _fail(str(exc)) from None

    def call(self, service: Service, method: str, path: str,
             body: dict[str, Any] | None = None) -> Any:
        """The JSON answer; a refusal or an unreachable service is printed and exits 1."""
        token = self.credentials.token
        if token is None:
            raise _fail("no credentials: set AMENDS_TOKEN (a JWT or an API key), write "
                        f"`token = \"...\"` to {_config_path()} (mode 600), or start the "
                        "local stack (`make up`) for its dev key")
        url = f"{self.credentials.urls[service].rstrip('/')}{path}"
        if httpx.URL(url).scheme != "https" and not _loopback(url):
            errors.print(f"[yellow]warning:[/yellow] sending credentials to {escape(url)} "
                         "without TLS; use https:// for a service on another host",
                         highlight=False, soft_wrap=True)
        try:
            response = httpx.request(method, url, json=body, timeout=15,
                                     headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise _fail(f"the {service} service at {url} did not answer: {exc}") from None
        if response.status_code in (401, 403):
            what = "not authenticated" if response.status_code == 401 else "forbidden"
            raise _fail(f"{what} ({response.status_code}, credentials from "
                        f"{self.credentials.source}): {_refusal(response)}")
        if response.status_code >= 400:
            raise _fail(f"refused ({response.status_code}): {_refusal(response)}")
        return response.json()

    def whoami(self) -> Identity:
        me = self.call("decision", "GET", "/v1/whoami")
        roles = frozenset(r for r in (_role(v) for v in me.get("roles", [])) if r is not None)
        return Identity(str(me["subject"]), roles, str(me["tenant"]), str(me.get("via", "")))

    def require(self, role: Role, *, every_tenant: bool = False) -> Identity:
        """The caller, when they hold `role` or higher (and act for every tenant, where the
        records at hand belong to any tenant); else a plain refusal and exit 1."""
        me = self.whoami()
        if me.role is None or me.role < role:
            held = me.role.name if me.role else "none"
            raise _fail(f"forbidden (check role): this needs the role {role.name} or higher; "
                        f"{me.subject} has {held}")
        if every_tenant and me.tenant != EVERY_TENANT:
            raise _fail(f"forbidden (check tenant): topics hold every tenant's records, so "
                        f"this needs an operator of every tenant (*); {me.subject} acts for "
                        f"tenant {me.tenant}")
        return me
