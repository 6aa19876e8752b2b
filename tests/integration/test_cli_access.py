"""The CLI as an operator: the credentials it takes (environment, a private config file),
what a refusal looks like, the roles the Kafka tools need, and the audit entries a redrive and
a replay leave, against real decision and fulfilment apps served over HTTP and the real
broker."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from amends import ops
from amends.cli import app as cli
from devtools import stack
from schemas.audit import AuditAction
from schemas.deadletter import DeadLetter, DeadLetterReason, MessageDeadLettered
from services.common.access import Role
from services.decision.app import create_app as decision_app
from services.decision.settings import DecisionSettings
from services.fulfilment.app import create_app as fulfilment_app
from tests import auth
from tests.infra import Infra, new_suffix
from tests.kafka_tools import collect, produce
from tests.operator_api import decision_api
from tests.pipeline import Topics, settings_for
from tests.servers import served

pytestmark = pytest.mark.integration

UNKNOWN_KEY = "amk_" + "x" * 43


@dataclass(frozen=True)
class Peers:
    infra: Infra
    suffix: str
    topics: Topics
    decision: str
    fulfilment: str


@pytest.fixture(scope="module")
def peers(infra: Infra) -> Iterator[Peers]:
    suffix = new_suffix()
    topics = Topics.unique(suffix)
    _, _, fulfilment_s = settings_for(infra, topics, f"amends_test_{suffix}")
    with decision_api(infra) as decision, served(fulfilment_app(fulfilment_s)) as fulfilment:
        yield Peers(infra, suffix, topics, decision, fulfilment)


def _run(peers: Peers, tmp_path: Path, *args: str, token: str | None,
         config: Path | None = None) -> Result:
    env = {"AMENDS_DECISION_URL": peers.decision, "AMENDS_FULFILMENT_URL": peers.fulfilment,
           "AMENDS_KAFKA_BOOTSTRAP": peers.infra.kafka_bootstrap,
           "AMENDS_MONGO_URL": peers.infra.mongo_url,
           "AMENDS_DEADLETTER_TOPIC": peers.topics.deadletter,
           "AMENDS_AUDIT_TOPIC": peers.topics.audit, "AMENDS_OPS_DB": f"ops_{peers.suffix}",
           "AMENDS_CONFIG": str(config or tmp_path / "no-config.toml"),
           # A state dir of its own: no dev key of a local stack to fall back to.
           "AMENDS_STACK_STATE_DIR": str(tmp_path / "stack"), "AMENDS_TOKEN": token}
    return CliRunner().invoke(cli, list(args), env=env)


def _key(role: Role, tenant: str = "*") -> str:
    return auth.headers(role, tenant)["Authorization"].removeprefix("Bearer ")


COMMANDS = [("review", "list"), ("case", "c-1"), ("whoami",), ("dlq", "list"),
            ("dlq", "show", "x"), ("dlq", "redrive", "x"), ("audit",),
            ("replay", "--topic", "t", "--from", "earliest")]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_without_credentials_a_command_says_where_to_get_them(
        peers: Peers, tmp_path: Path, command: tuple[str, ...]) -> None:
    result = _run(peers, tmp_path, *command, token=None)
    assert result.exit_code == 1, result.output
    assert "no credentials: set AMENDS_TOKEN" in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unknown_key_is_refused_with_the_services_check(
        peers: Peers, tmp_path: Path, command: tuple[str, ...]) -> None:
    result = _run(peers, tmp_path, *command, token=UNKNOWN_KEY)
    assert result.exit_code == 1, result.output
    assert "not authenticated (401, credentials from AMENDS_TOKEN)" in result.output
    assert "check api_key: the API key is not known" in result.output
    assert "Traceback" not in result.output


def test_the_operator_is_who_the_credentials_name(peers: Peers, tmp_path: Path) -> None:
    me = _run(peers, tmp_path, "whoami", token=_key(Role.support, "shop-a"))
    assert me.exit_code == 0, me.output
    assert f"{auth.subject(Role.support, 'shop-a')}: support in tenant shop-a" in me.output
    listed = _run(peers, tmp_path, "review", "list", token=_key(Role.viewer))
    assert listed.exit_code == 0, listed.output
    assert "0 decision(s) held for review" in listed.output
    case = _run(peers, tmp_path, "case", f"c-{peers.suffix}", token=_key(Role.viewer))
    assert case.exit_code == 0, case.output
    assert "0 points" in case.output


def test_a_viewer_reads_but_may_not_redrive_or_replay(peers: Peers, tmp_path: Path) -> None:
    viewer = _key(Role.viewer)
    assert _run(peers, tmp_path, "dlq", "list", token=viewer).exit_code == 0
    assert _run(peers, tmp_path, "audit", token=viewer).exit_code == 0
    for command, role in ((("dlq", "redrive", "x"), Role.admin),
                          (("replay", "--topic", peers.topics.orders, "--from", "earliest"),
                           Role.admin),
                          (("dlq", "show", "x"), Role.support)):
        refused = _run(peers, tmp_path, *command, token=viewer)
        assert refused.exit_code == 1, refused.output
        assert (f"forbidden (check role): this needs the role {role.name} or higher; "
                f"{auth.subject(Role.viewer)} has viewer") in refused.output
    # A support agent may see a payload (there is no such letter here).
    shown = _run(peers, tmp_path, "dlq", "show", "x", token=_key(Role.support))
    assert shown.exit_code == 1, shown.output
    assert "no dead letter 'x'" in shown.output
    dry = _run(peers, tmp_path, "replay", "--topic", peers.topics.decisions, "--from",
               "earliest", "--dry-run", token=viewer)
    assert dry.exit_code == 0, dry.output


@pytest.mark.parametrize("command", [("dlq", "list"), ("dlq", "show", "x"),
                                     ("dlq", "redrive", "x"),
                                     ("replay", "--topic", "t", "--from", "earliest")],
                         ids=" ".join)
def test_the_topic_tools_need_an_operator_of_every_tenant(
        peers: Peers, tmp_path: Path, command: tuple[str, ...]) -> None:
    refused = _run(peers, tmp_path, *command, token=_key(Role.admin, "shop-a"))
    assert refused.exit_code == 1, refused.output
    assert "forbidden (check tenant)" in refused.output
    assert f"{auth.subject(Role.admin, 'shop-a')} acts for tenant shop-a" in refused.output


def test_the_config_file_is_used_only_when_private(peers: Peers, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'token = "{_key(Role.reviewer)}"\ndecision_url = "{peers.decision}"\n')
    config.chmod(0o644)
    shared = _run(peers, tmp_path, "whoami", token=None, config=config)
    assert shared.exit_code == 1, shared.output
    assert "is readable by others (mode 644)" in shared.output
    assert "chmod 600" in shared.output
    config.chmod(0o600)
    private = _run(peers, tmp_path, "whoami", token=None, config=config)
    assert private.exit_code == 0, private.output
    assert f"{auth.subject(Role.reviewer)}: reviewer in tenant *" in private.output
    assert f"credentials from {config}" in private.output.replace("\n", "")
    # The environment comes first.
    first = _run(peers, tmp_path, "whoami", token=_key(Role.viewer), config=config)
    assert f"{auth.subject(Role.viewer)}: viewer" in first.output


def _dead_letter(topic: str, original: str, offset: int, value: bytes) -> tuple[str, bytes]:
    letter = DeadLetter(
        dead_letter_id=str(uuid.uuid4()), service="intake", reason=DeadLetterReason.invalid,
        error="test", topic=original, partition=0, offset=offset,
        key_b64=base64.b64encode(b"c-1").decode(), value_b64=base64.b64encode(value).decode(),
        failed_at=datetime.now(UTC))
    event = MessageDeadLettered(id=letter.dead_letter_id, source="amends/intake",
                                time=letter.failed_at, subject="c-1", data=letter)
    return letter.dead_letter_id, event.model_dump_json().encode()


async def test_a_redrive_and_a_replay_each_leave_one_audit_entry(
        peers: Peers, tmp_path: Path) -> None:
    original, copy = f"orig.{peers.suffix}", f"copy.{peers.suffix}"
    await produce(peers.infra.kafka_bootstrap, original, [("c-1", b"one"), ("c-1", b"two")])
    letters = [_dead_letter(peers.topics.deadletter, original, n, v)
               for n, v in enumerate((b"one", b"two"))]
    await produce(peers.infra.kafka_bootstrap, peers.topics.deadletter,
                  [("c-1", body) for _, body in letters])
    admin = _key(Role.admin)

    redrive = await asyncio.to_thread(
        _run, peers, tmp_path, "dlq", "redrive", *(i for i, _ in letters), "--why",
        "fixed the parser", token=admin)
    assert redrive.exit_code == 0, redrive.output
    assert "redrove 2 dead letters" in redrive.output
    replay = await asyncio.to_thread(
        _run, peers, tmp_path, "replay", "--topic", original, "--from", "earliest", "--into",
        copy, "--reason", "rebuild the copy", token=admin)
    assert replay.exit_code == 0, replay.output

    on_topic = await collect(peers.infra.kafka_bootstrap, peers.topics.audit,
                             lambda seen: len(seen) >= 2, settle_s=1.0)
    on_topic.sort(key=lambda e: str(e["data"]["at"]))  # keyed apart, on two partitions
    assert [e["data"]["action"] for e in on_topic] == ["redrive", "replay"]
    redriven, replayed = (e["data"] for e in on_topic)
    for entry in (redriven, replayed):
        assert entry["actor"] == auth.subject(Role.admin)
        assert entry["actor_via"] == "cli"
        assert entry["roles"] == ["admin"]
        assert entry["address"] == socket.gethostname()
        assert entry["service"] == "ops"
    assert redriven["reason"] == "fixed the parser"
    assert all(i in redriven["target"] for i, _ in letters)
    assert redriven["before"] == {"selected": 2, "redriven_before": 0}
    assert redriven["after"]["redriven"] == 2
    assert sorted(redriven["after"]["dead_letter_ids"]) == sorted(i for i, _ in letters)
    assert replayed["target"] == f"{original} from earliest to its end into {copy}"
    # Two originals, plus the two the redrive sent back.
    assert replayed["before"] == {"scanned": 4, "matched": 4}
    assert replayed["after"] == {"published": 4, "into": copy}
    copied = await ops.read_to_end(peers.infra.kafka_bootstrap, copy)
    assert sorted(r.value for r in copied) == [b"one", b"one", b"two", b"two"]

    listed = await asyncio.to_thread(_run, peers, tmp_path, "audit", "--json",
                                     token=_key(Role.viewer))
    assert listed.exit_code == 0, listed.output
    assert [e["audit_id"] for e in json.loads(listed.output)] == [
        redriven["audit_id"], replayed["audit_id"]]
    only = await asyncio.to_thread(_run, peers, tmp_path, "audit", "--json", "--action",
                                   "replay", "--since", "1h", token=_key(Role.viewer))
    assert [e["action"] for e in json.loads(only.output)] == ["replay"]
    nobody = await asyncio.to_thread(_run, peers, tmp_path, "audit", "--json", "--actor",
                                     "someone-else", token=_key(Role.viewer))
    assert json.loads(nobody.output) == []
    # An operator of one tenant does not see what an operator of every tenant did.
    other = await asyncio.to_thread(_run, peers, tmp_path, "audit", "--json",
                                    token=_key(Role.viewer, "shop-a"))
    assert json.loads(other.output) == []
    table = await asyncio.to_thread(_run, peers, tmp_path, "audit", token=_key(Role.viewer))
    assert "2 audit entries" in table.output
    assert "redrive" in table.output
    assert "replay" in table.output
    entries = await ops.read_audit(peers.infra.kafka_bootstrap, peers.topics.audit)
    assert [e.action for e in entries] == [AuditAction.redrive, AuditAction.replay]


def test_the_cli_uses_the_local_stacks_dev_key_on_a_service_it_started(
        infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision configured as `amends stack up --services` starts it, and the CLI with no
    credentials of its own: `amends whoami` and `amends review list` (the demo's hint) work
    as the stack's dev operator."""
    state = tmp_path / "stack"
    env = stack.service_env(stack.StackSettings(state_dir=state), {})
    for name in ("AMENDS_HTTP_HOST", "AMENDS_AUTH_API_KEYS_FILE", "AMENDS_CUSTOMER_LINK_KEYS",
                 "AMENDS_CUSTOMER_LINK_KID"):
        monkeypatch.setenv(name, env[name])
    suffix = new_suffix()
    topics = Topics.unique(suffix)
    settings = DecisionSettings(
        kafka_bootstrap=infra.kafka_bootstrap, mongo_url=infra.mongo_url,
        mongo_db=f"amends_test_{suffix}_decision", consumer_group=f"amends_test_{suffix}",
        incidents_topic=topics.incidents, decisions_topic=topics.decisions,
        outcomes_topic=topics.outcomes, deadletter_topic=topics.deadletter,
        audit_topic=topics.audit)
    assert settings.auth_api_keys == []  # the dev key's digest comes from the file alone
    cli_env = {"AMENDS_TOKEN": None, "AMENDS_CONFIG": str(tmp_path / "none.toml"),
               "AMENDS_STACK_STATE_DIR": str(state)}
    with served(decision_app(settings), "decision") as url:
        cli_env["AMENDS_DECISION_URL"] = url
        me = CliRunner().invoke(cli, ["whoami"], env=cli_env)
        assert me.exit_code == 0, me.output
        assert f"{stack.DEV_KEY_NAME}: admin in tenant *" in me.output
        assert "the local stack's dev key" in me.output
        held = CliRunner().invoke(cli, ["review", "list"], env=cli_env)
        assert held.exit_code == 0, held.output
