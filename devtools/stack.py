"""The local stack: Apache Kafka (KRaft), FerretDB and Prometheus on this machine, without
Docker.

Fetches what is missing (Kafka's jars with Maven, FerretDB built from `deploy/ferretdb` with
Go; Prometheus is Debian's package, installed by `scripts/system-tools`), caches it under the
state directory, starts each, waits until it answers, and stops exactly the processes it
started (their pids are kept next to their logs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from amends import dev_key

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = REPO_ROOT / "deploy"
# A fixed cluster id: the storage is formatted once and the same id is expected on restart.
KAFKA_CLUSTER_ID = "QW1lbmRzTG9jYWxTdGFjaw"


class StackError(RuntimeError):
    """A problem the user can fix; the message says how."""


class StackSettings(BaseSettings):
    """Where the local stack keeps its files and which ports it uses."""

    model_config = SettingsConfigDict(env_prefix="AMENDS_STACK_", populate_by_name=True)

    state_dir: Path = dev_key.DEFAULT_STATE_DIR
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "1g"
    mongo_port: int = 27017
    prometheus_port: int = 9090
    start_timeout_s: float = 90.0

    cache_dir_override: Path | None = Field(default=None, alias="AMENDS_STACK_CACHE_DIR")

    @property
    def cache_dir(self) -> Path:
        """Downloads and builds, reusable by every state directory."""
        return self.cache_dir_override or self.state_dir / "cache"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Process:
    """A background process of the stack, known by the pid file it leaves in the run dir."""

    name: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self, argv: Sequence[str], *, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the process (its whole session); True when something was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not alive; reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _require_tool(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise StackError(f"`{tool}` was not found on PATH: {hint}")
    return found


def _run_build(argv: Sequence[str], *, cwd: Path, what: str, log: Path,
               env: dict[str, str] | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        code = subprocess.call(list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=env)
    if code != 0:
        raise StackError(f"{what} failed (exit {code}); see {log} for the details")


# --- Kafka -------------------------------------------------------------------------------------


def kafka_libs(settings: StackSettings, progress: Progress = _quiet) -> Path:
    """The directory of Kafka's jars, fetched with Maven the first time."""
    pom = DEPLOY_DIR / "kafka" / "pom.xml"
    libs = settings.cache_dir / f"kafka-libs-{_digest(pom)}"
    if (libs / ".complete").exists():
        return libs
    _require_tool("java", "install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre)")
    mvn = _require_tool("mvn", "install Apache Maven (e.g. apt-get install maven)")
    progress("fetching Apache Kafka's jars with Maven (once)")
    shutil.rmtree(libs, ignore_errors=True)
    _run_build(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs}"],
        cwd=pom.parent, what="fetching Kafka's jars with Maven",
        log=settings.cache_dir / "kafka-fetch.log",
    )
    (libs / ".complete").write_text("ok\n")
    return libs


def _kafka_java(settings: StackSettings, libs: Path, *args: str) -> list[str]:
    java = _require_tool("java", "install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre)")
    return [
        java, f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}",
        "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'kafka' / 'log4j2.properties'}",
        "-cp", f"{libs}/*", *args,
    ]


def kafka_properties(settings: StackSettings) -> dict[str, str]:
    """The broker's configuration: deploy/kafka/server.properties with the stack's ports."""
    template = (DEPLOY_DIR / "kafka" / "server.properties").read_text()
    text = template.format(port=settings.kafka_port,
                           controller_port=settings.kafka_controller_port,
                           data_dir=settings.state_dir / "kafka-data")
    return dict(line.split("=", 1) for line in text.splitlines()
                if line.strip() and not line.startswith("#"))


def _kafka_config(settings: StackSettings) -> Path:
    config = settings.run_dir / "kafka-server.properties"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("".join(f"{k}={v}\n" for k, v in kafka_properties(settings).items()))
    return config


def start_kafka(settings: StackSettings, progress: Progress = _quiet) -> str:
    proc = Process("kafka", settings.run_dir)
    if proc.pid() is not None and port_open(settings.kafka_port):
        return "already running"
    for port in (settings.kafka_port, settings.kafka_controller_port):
        if proc.pid() is None and port_open(port):
            raise StackError(
                f"port {port} is already taken by another process: stop it, or choose other "
                "ports with AMENDS_STACK_KAFKA_PORT / AMENDS_STACK_KAFKA_CONTROLLER_PORT"
            )
    libs = kafka_libs(settings, progress)
    config = _kafka_config(settings)
    if not (settings.state_dir / "kafka-data" / "meta.properties").exists():
        progress("formatting Kafka's storage")
        _run_build(
            _kafka_java(settings, libs, "kafka.tools.StorageTool", "format",
                        "-t", KAFKA_CLUSTER_ID, "-c", str(config), "--ignore-formatted"),
            cwd=settings.state_dir, what="formatting Kafka's storage",
            log=settings.run_dir / "kafka-format.log",
        )
    if proc.pid() is None:
        progress("starting Kafka")
        proc.start(_kafka_java(settings, libs, "kafka.Kafka", str(config)),
                   cwd=settings.state_dir)
    _wait(proc, settings, lambda: _kafka_ready(settings.kafka_bootstrap), "Kafka")
    return "started"


def _kafka_ready(bootstrap: str) -> bool:
    """True when the broker answers a metadata request (not only accepts connections)."""
    host, port = bootstrap.rsplit(":", 1)
    if not port_open(int(port), host):
        return False
    code = subprocess.call(
        [sys.executable, "-c", _KAFKA_PROBE, bootstrap],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
    )
    return code == 0


_KAFKA_PROBE = """
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient
async def main():
    admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()
asyncio.run(main())
"""


async def forget(bootstrap: str, mongo_url: str, databases: Sequence[str],
                 topics: Sequence[str]) -> None:
    """Drop `databases` and delete `topics` (what a bench run or a test session made): left
    behind, they pile up on the local stack until FerretDB slows down and Kafka runs out of
    open files. A topic that was never created is not there to delete, and that is fine."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415 - only the tools need it
    from pymongo import AsyncMongoClient  # noqa: PLC0415

    if databases:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url)
        try:
            for name in databases:
                await client.drop_database(name)
        finally:
            await client.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for start in range(0, len(topics), 200):  # a request per few hundred topics
            with contextlib.suppress(Exception):
                await admin.delete_topics(list(topics[start:start + 200]))
    finally:
        await admin.close()


# --- FerretDB ----------------------------------------------------------------------------------


def ferretdb_binary(settings: StackSettings, progress: Progress = _quiet) -> Path:
    """FerretDB (SQLite backend) built from our Go module the first time."""
    src = DEPLOY_DIR / "ferretdb"
    binary = settings.cache_dir / (
        "ferretdb-" + _digest(src / "go.mod", src / "go.sum", src / "main.go"))
    if binary.exists():
        return binary
    go = _require_tool("go", "install Go 1.22+ (https://go.dev/doc/install)")
    progress("building FerretDB with Go (once, a minute or two)")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"}
    tmp = binary.with_suffix(".tmp")
    _run_build([go, "build", "-trimpath", "-o", str(tmp), "."], cwd=src,
               what="building FerretDB with Go", log=settings.cache_dir / "ferretdb-build.log",
               env=env)
    tmp.rename(binary)
    return binary


def ferretdb_argv(settings: StackSettings, binary: Path) -> list[str]:
    return [str(binary), "-listen-addr", f"127.0.0.1:{settings.mongo_port}",
            "-sqlite-dir", str(settings.state_dir / "ferretdb-data")]


def start_ferretdb(settings: StackSettings, progress: Progress = _quiet) -> str:
    proc = Process("ferretdb", settings.run_dir)
    if proc.pid() is not None and port_open(settings.mongo_port):
        return "already running"
    if proc.pid() is None and port_open(settings.mongo_port):
        raise StackError(
            f"port {settings.mongo_port} is already taken by another process: stop it, or "
            "choose another port with AMENDS_STACK_MONGO_PORT"
        )
    binary = ferretdb_binary(settings, progress)
    data = settings.state_dir / "ferretdb-data"
    data.mkdir(parents=True, exist_ok=True)
    if proc.pid() is None:
        progress("starting FerretDB")
        proc.start(ferretdb_argv(settings, binary), cwd=settings.state_dir)
    _wait(proc, settings, lambda: _mongo_ready(settings.mongo_url), "FerretDB")
    return "started"


def _mongo_ready(url: str) -> bool:
    from pymongo import MongoClient  # noqa: PLC0415 - only the CLI needs the sync client
    from pymongo.errors import PyMongoError  # noqa: PLC0415

    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=1000)
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


# --- Prometheus --------------------------------------------------------------------------------

PROMETHEUS_DIR = DEPLOY_DIR / "prometheus"
PROMETHEUS_HINT = ("run `make tools` (it installs Debian's prometheus package), or install "
                   "Prometheus 2.x and put `prometheus` on PATH")
# The repository's config scrapes every 15 s; the local stack scrapes every 5 s, so that a
# service just started (`make demo`) shows as up within seconds. The rules do not depend on it.
LOCAL_SCRAPE_INTERVAL = "5s"


def prometheus_config(ports: Mapping[str, int]) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml for this machine: each job scrapes its service on the
    port in `ports` (by service name), and the rule files are the repository's own."""
    import yaml  # noqa: PLC0415 - only Prometheus' start needs it

    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": LOCAL_SCRAPE_INTERVAL,
                         "scrape_timeout": LOCAL_SCRAPE_INTERVAL,
                         "evaluation_interval": LOCAL_SCRAPE_INTERVAL}
    # Relative to the config file in deploy/; the generated file lives in the run dir.
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    for job in config["scrape_configs"]:
        service = job["job_name"].removeprefix("amends-")
        if service not in ports:
            raise StackError(f"deploy/prometheus/prometheus.yml has a job {job['job_name']!r} "
                             f"for no service the stack runs ({', '.join(ports)})")
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[service]}"]}]
    return config


def _write_prometheus_config(settings: StackSettings) -> Path:
    import yaml  # noqa: PLC0415

    path = settings.run_dir / "prometheus.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = prometheus_config(service_ports())
    path.write_text("# Made by `python -m devtools stack up` from deploy/prometheus/"
                    "prometheus.yml; edit that file instead.\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


def prometheus_argv(settings: StackSettings, binary: str, config: Path) -> list[str]:
    return [binary, f"--config.file={config}",
            f"--storage.tsdb.path={settings.state_dir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{settings.prometheus_port}"]


def start_prometheus(settings: StackSettings, progress: Progress = _quiet) -> str:
    """Prometheus scraping the stack's services with the repository's rules. Already running,
    it reloads the config (SIGHUP), so that a service moved to another port is followed."""
    proc = Process("prometheus", settings.run_dir)
    pid = proc.pid()
    if pid is not None and port_open(settings.prometheus_port):
        _write_prometheus_config(settings)
        os.kill(pid, signal.SIGHUP)
        return "already running"
    if pid is None and port_open(settings.prometheus_port):
        raise StackError(
            f"port {settings.prometheus_port} is already taken by another process (Debian's "
            "prometheus service?): stop it, or choose another port with "
            "AMENDS_STACK_PROMETHEUS_PORT"
        )
    binary = _require_tool("prometheus", PROMETHEUS_HINT)
    config = _write_prometheus_config(settings)
    if pid is None:
        progress("starting Prometheus")
        proc.start(prometheus_argv(settings, binary, config), cwd=settings.state_dir)
    _wait(proc, settings, partial(_http_ok, f"{settings.prometheus_url}/-/ready"), "Prometheus")
    return "started"


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str
    health: str  # up, down, unknown (not scraped yet)
    error: str
    scraped_at: datetime


@dataclass(frozen=True)
class AlertState:
    name: str
    severity: str
    state: str  # inactive, pending, firing
    evaluated_at: datetime


def _instant(text: str) -> datetime:
    """Prometheus' RFC 3339 times (nanoseconds, `Z`); never is year 1."""
    return datetime.fromisoformat(text)


def _prometheus_api(url: str, path: str, **params: str) -> Any:
    import httpx  # noqa: PLC0415

    try:
        response = httpx.get(f"{url}{path}", params=params, timeout=5.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise StackError(f"Prometheus at {url} did not answer {path}: {exc}") from exc
    return response.json()["data"]


def scrape_targets(url: str) -> list[ScrapeTarget]:
    """The targets Prometheus scrapes and how their last scrape went (`/api/v1/targets`)."""
    active = _prometheus_api(url, "/api/v1/targets", state="active")["activeTargets"]
    return sorted((ScrapeTarget(t["labels"]["job"], t["scrapeUrl"], t["health"],
                                t.get("lastError", ""), _instant(t["lastScrape"]))
                   for t in active),
                  key=lambda t: t.job)


def alert_states(url: str) -> list[AlertState]:
    """Every alerting rule loaded and its state, firing ones first (`/api/v1/rules`)."""
    groups = _prometheus_api(url, "/api/v1/rules", type="alert")["groups"]
    order = {"firing": 0, "pending": 1}
    return sorted((AlertState(r["name"], r.get("labels", {}).get("severity", "-"), r["state"],
                              _instant(r["lastEvaluation"]))
                   for g in groups for r in g["rules"]),
                  key=lambda a: (order.get(a.state, 2), a.name))


# --- credentials ---------------------------------------------------------------------------

DEV_KEY_NAME = "local-dev"
DEV_LINK_KID = "local-1"


def dev_key_path(settings: StackSettings) -> Path:
    """The dev API key (admin, every tenant) the local stack made; the CLI falls back to it."""
    return dev_key.dev_key_file(settings.state_dir)


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`, made once; the file is readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Created 0600 from the start: never readable by others, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(make() + "\n")
    path.chmod(0o600)
    return path.read_text().strip()


@dataclass(frozen=True)
class DevCredentials:
    api_key: str
    api_key_file: Path
    api_keys_file: Path
    link_keys: dict[str, str]
    pseudonym_key: str
    console_session_key: str


def dev_credentials(settings: StackSettings) -> DevCredentials:
    """The local stack's dev API key, customer-link key and erasure pseudonym key, made on
    first use and kept under the run dir (mode 0600). The services are given the API key's
    SHA-256 only."""
    from services.common.access import (  # noqa: PLC0415 - keeps `python -m devtools stack` start-up light
        ApiKey,
        Role,
        key_digest,
        new_api_key,
    )

    key_file = dev_key_path(settings)
    api_key = _secret_file(key_file, new_api_key)
    link_key = _secret_file(settings.run_dir / "customer-link-key",
                            lambda: secrets.token_urlsafe(32))
    pseudonym_key = _secret_file(settings.run_dir / "erasure-pseudonym-key",
                                 lambda: secrets.token_urlsafe(32))
    console_key = _secret_file(settings.run_dir / "console-session-key",
                               lambda: secrets.token_urlsafe(32))
    keys_file = settings.run_dir / "api-keys.json"
    dev = ApiKey(name=DEV_KEY_NAME, sha256=key_digest(api_key), roles=[Role.admin],
                 tenant="*")
    known = [{**dev.model_dump(mode="json"), "roles": [r.name for r in dev.roles]}]
    keys_file.write_text(json.dumps(known, indent=2) + "\n")
    keys_file.chmod(0o600)
    return DevCredentials(api_key, key_file, keys_file, {DEV_LINK_KID: link_key},
                          pseudonym_key, console_key)


# --- both --------------------------------------------------------------------------------------


def _wait(proc: Process, settings: StackSettings, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + settings.start_timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.pid() is None:
            raise StackError(f"{what} exited while starting; last lines of {proc.log_file}:\n"
                             f"{proc.log_tail()}")
        time.sleep(0.5)
    raise StackError(f"{what} did not answer within {settings.start_timeout_s:.0f}s; "
                     f"see {proc.log_file}")


def up(settings: StackSettings | None = None, progress: Progress = _quiet) -> dict[str, str]:
    """Start Kafka and FerretDB unless they run already; returns what happened to each."""
    settings = settings or StackSettings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return {"ferretdb": start_ferretdb(settings, progress),
            "kafka": start_kafka(settings, progress)}


STACK_PROCESSES = ("kafka", "ferretdb")
SERVICES = ("intake", "decision", "fulfilment")


def service_ports() -> dict[str, int]:
    """Each service's HTTP port (API, `/metrics`, `/health`) as its own settings read it from
    this environment (`AMENDS_INTAKE_HTTP_PORT`, ...), which the services the stack starts
    inherit."""
    # Imported here: the services' settings pull in FastAPI, which `stack down` never needs.
    from services.decision.settings import DecisionSettings  # noqa: PLC0415
    from services.fulfilment.settings import FulfilmentSettings  # noqa: PLC0415
    from services.intake.settings import IntakeSettings  # noqa: PLC0415

    return {"intake": IntakeSettings().http_port, "decision": DecisionSettings().http_port,
            "fulfilment": FulfilmentSettings().http_port}


def down(settings: StackSettings | None = None,
         names: Sequence[str] = ("prometheus", *SERVICES, *STACK_PROCESSES)
         ) -> dict[str, str]:
    """Stop what the stack started (Prometheus and the services first, then the broker and
    the database)."""
    settings = settings or StackSettings()
    return {name: "stopped" if Process(name, settings.run_dir).stop() else "was not running"
            for name in names}


def _http_ok(url: str) -> bool:
    import httpx  # noqa: PLC0415 - keeps `python -m devtools stack` start-up light

    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def service_env(settings: StackSettings, base: Mapping[str, str]) -> dict[str, str]:
    """The environment the stack starts each service with: the local broker and database,
    127.0.0.1 only, the dev API key (by digest), the customer-link key, the erasure
    pseudonym key, and the directory of trace files (`amends trace` looks there) unless the
    caller names one."""
    dev = dev_credentials(settings)
    traces = base.get("AMENDS_TRACE_DIR") or str(dev_key.trace_dir(settings.state_dir))
    ports = service_ports()
    # The customer's page (fulfilment) hands choices to decision, and the console (decision)
    # reads cases from fulfilment: wherever their ports are.
    pages = {"AMENDS_FULFILMENT_DECISION_URL": f"http://127.0.0.1:{ports['decision']}",
             "AMENDS_FULFILMENT_CUSTOMER_PAGE_URL":
                 f"http://127.0.0.1:{ports['fulfilment']}/v1/customer/decisions/{{decision_id}}"
                 "?token={token}",
             # The console (decision) reads cases from fulfilment; its sessions outlive a
             # restart of decision.
             "AMENDS_DECISION_FULFILMENT_URL": f"http://127.0.0.1:{ports['fulfilment']}",
             "AMENDS_DECISION_CONSOLE_SESSION_KEY": dev.console_session_key}
    return {**pages, **base, "AMENDS_TRACE_DIR": traces,
            "AMENDS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "AMENDS_MONGO_URL": settings.mongo_url, "AMENDS_HTTP_HOST": "127.0.0.1",
            "AMENDS_AUTH_API_KEYS_FILE": str(dev.api_keys_file),
            "AMENDS_CUSTOMER_LINK_KEYS": json.dumps(dev.link_keys),
            "AMENDS_CUSTOMER_LINK_KID": DEV_LINK_KID,
            "AMENDS_ERASURE_PSEUDONYM_KEY": dev.pseudonym_key, "PYTHONUNBUFFERED": "1"}


def service_argv(name: str) -> list[str]:
    return [sys.executable, "-m", f"services.{name}"]


def services_up(settings: StackSettings | None = None,
                progress: Progress = _quiet) -> dict[str, str]:
    """Start the three services as processes of their own against the local stack."""
    settings = settings or StackSettings()
    env = service_env(settings, os.environ)
    ports = service_ports()
    result = {}
    for name, port in ports.items():
        proc = Process(name, settings.run_dir)
        if proc.pid() is not None:
            result[name] = "already running"
            continue
        if port_open(port):
            raise StackError(f"port {port} (for {name}) is already taken by another process; "
                             f"stop it, or set AMENDS_{name.upper()}_HTTP_PORT")
        progress(f"starting {name}")
        proc.start(service_argv(name), cwd=REPO_ROOT, env=env)
        result[name] = "started"
    for name, port in ports.items():
        health = f"http://127.0.0.1:{port}/health"
        _wait(Process(name, settings.run_dir), settings, partial(_http_ok, health), name)
    return result


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    address: str
    answering: bool
    log: Path


def status(settings: StackSettings | None = None) -> list[ComponentStatus]:
    settings = settings or StackSettings()
    rows = []
    for name, port in (("kafka", settings.kafka_port), ("ferretdb", settings.mongo_port),
                       *service_ports().items(), ("prometheus", settings.prometheus_port)):
        proc = Process(name, settings.run_dir)
        rows.append(ComponentStatus(name, proc.pid(), f"127.0.0.1:{port}", port_open(port),
                                    proc.log_file))
    return rows


@contextlib.contextmanager
def running(settings: StackSettings | None = None,
            progress: Progress = _quiet) -> Iterator[StackSettings]:
    """The stack for the duration of a block; stops only what this block started."""
    settings = settings or StackSettings()
    started = up(settings, progress)
    try:
        yield settings
    finally:
        down(settings, [name for name, what in started.items() if what == "started"])
