"""Services as processes of their own (`python -m services.<name>`), for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.infra import Infra
from tests.pipeline import Topics

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(infra: Infra, topics: Topics, suffix: str) -> dict[str, str]:
    """The environment that points every service at the test's topics and databases."""
    return {
        **os.environ,
        "AMENDS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "AMENDS_MONGO_URL": infra.mongo_url,
        "AMENDS_DEADLETTER_TOPIC": topics.deadletter,
        "AMENDS_AUDIT_TOPIC": topics.audit,
        "AMENDS_ERASURES_TOPIC": topics.erasures,
        "AMENDS_INTAKE_MONGO_DB": f"e2e_intake_{suffix}",
        "AMENDS_DECISION_MONGO_DB": f"e2e_decision_{suffix}",
        "AMENDS_FULFILMENT_MONGO_DB": f"e2e_fulfilment_{suffix}",
        "AMENDS_INTAKE_ORDERS_TOPIC": topics.orders,
        "AMENDS_INTAKE_SUPPORT_TOPIC": topics.support,
        "AMENDS_INTAKE_PAYMENTS_TOPIC": topics.payments,
        "AMENDS_INTAKE_OUTAGES_TOPIC": topics.outages,
        "AMENDS_INCIDENTS_TOPIC": topics.incidents,
        "AMENDS_DECISIONS_TOPIC": topics.decisions,
        "AMENDS_OUTCOMES_TOPIC": topics.outcomes,
        "AMENDS_FULFILMENT_TASKS_TOPIC": topics.tasks,
        # Groups of the test's own: another test's members never stall its rebalances.
        **{f"AMENDS_{name.upper()}_CONSUMER_GROUP": f"{name}-{suffix}"
           for name in ("intake", "decision", "fulfilment")},
    }


def start(name: str, env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start one service on `port`, its output appended to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"], cwd=REPO, stdout=log.open("ab"),
        stderr=subprocess.STDOUT, env={**env, f"AMENDS_{name.upper()}_HTTP_PORT": str(port)})


def wait_healthy(port: int, log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
