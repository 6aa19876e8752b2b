"""The local stack's operator access and its addresses: a dev API key made once and kept
private, handed to the services by digest, the CLI falling back to it; everything it starts
listens on 127.0.0.1 only. Checked on what the stack builds (files, environment, argv,
the broker's configuration), without starting the shared stack."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amends import cli_auth, dev_key
from amends.cli import app as cli
from devtools import stack
from devtools.cli import app as devtools_cli
from services.common.access import Authenticator, Role, key_digest
from services.common.links import CustomerLinks
from services.decision.settings import DecisionSettings
from services.fulfilment.settings import FulfilmentSettings

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> stack.StackSettings:
    monkeypatch.setenv("AMENDS_STACK_STATE_DIR", str(tmp_path / "state"))
    return stack.StackSettings()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_dev_key_is_made_once_and_readable_by_its_owner_only(
        settings: stack.StackSettings) -> None:
    first = stack.dev_credentials(settings)
    assert first.api_key.startswith("amk_")
    assert first.api_key_file == stack.dev_key_path(settings)
    for path in (first.api_key_file, first.api_keys_file,
                 settings.run_dir / "customer-link-key",
                 settings.run_dir / "erasure-pseudonym-key"):
        assert _mode(path) == 0o600, path
    again = stack.dev_credentials(settings)
    assert again.api_key == first.api_key
    assert again.link_keys == first.link_keys
    assert again.pseudonym_key == first.pseudonym_key
    # The services get the key's digest, never the key.
    (known,) = json.loads(first.api_keys_file.read_text())
    assert known == {"name": stack.DEV_KEY_NAME, "sha256": key_digest(first.api_key),
                     "roles": ["admin"], "tenant": "*"}
    assert first.api_key not in first.api_keys_file.read_text()


def test_a_dev_key_file_others_could_read_is_made_private_again(
        settings: stack.StackSettings) -> None:
    path = stack.dev_credentials(settings).api_key_file
    path.chmod(0o644)
    stack.dev_credentials(settings)
    assert _mode(path) == 0o600


def test_the_services_listen_on_loopback_and_know_the_dev_key(
        settings: stack.StackSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    env = stack.service_env(settings, {"PATH": "/usr/bin", "AMENDS_HTTP_HOST": "0.0.0.0"})
    assert env["AMENDS_HTTP_HOST"] == "127.0.0.1"
    assert env["PATH"] == "/usr/bin"
    assert stack.service_argv("decision")[1:] == ["-m", "services.decision"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    service = DecisionSettings()
    assert service.http_host == "127.0.0.1"
    assert (service.kafka_bootstrap, service.mongo_url) == (settings.kafka_bootstrap,
                                                            settings.mongo_url)
    dev = stack.dev_credentials(settings)
    principal = asyncio.run(Authenticator(service.auth).authenticate(
        {"authorization": f"Bearer {dev.api_key}"}))
    assert (principal.subject, principal.role, principal.tenant) == (
        stack.DEV_KEY_NAME, Role.admin, "*")
    assert set(service.customer_link_keys) == {stack.DEV_LINK_KID}
    assert service.customer_link_kid == stack.DEV_LINK_KID
    # Erasure works on the local stack: every service pseudonymises with the same key.
    assert service.erasure_pseudonym_key is not None
    assert service.erasure_pseudonym_key.get_secret_value() == dev.pseudonym_key
    links = CustomerLinks(service.customer_link_keys, service.customer_link_kid,
                          timedelta(days=1))
    now = datetime.now(UTC)
    assert links.verify(links.sign("c-1", "d-1", now), "d-1", now).customer_id == "c-1"


def test_kafka_and_ferretdb_listen_on_loopback_only(settings: stack.StackSettings) -> None:
    props = stack.kafka_properties(settings)
    assert props["listeners"] == (f"PLAINTEXT://127.0.0.1:{settings.kafka_port},"
                                  f"CONTROLLER://127.0.0.1:{settings.kafka_controller_port}")
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{settings.kafka_port}"
    assert props["controller.quorum.voters"] == (
        f"1@127.0.0.1:{settings.kafka_controller_port}")
    argv = stack.ferretdb_argv(settings, Path("ferretdb"))
    assert argv[argv.index("-listen-addr") + 1] == f"127.0.0.1:{settings.mongo_port}"
    for row in stack.status(settings):
        assert row.address.startswith("127.0.0.1:")


def test_the_cli_falls_back_to_the_dev_key(settings: stack.StackSettings,
                                           monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.delenv("AMENDS_TOKEN", raising=False)
    monkeypatch.setenv("AMENDS_CONFIG", str(tmp_path / "none.toml"))
    assert cli_auth.load().token is None
    dev = stack.dev_credentials(settings)
    found = cli_auth.load()
    assert found.token == dev.api_key
    assert found.source == f"the local stack's dev key ({dev.api_key_file})"
    shown = CliRunner().invoke(devtools_cli, ["stack", "token"])
    assert shown.exit_code == 0, shown.output
    assert shown.output == f"{dev.api_key}\n"


def test_the_cli_and_the_stack_agree_on_the_dev_keys_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator CLI finds the key by a shared convention, not by importing the stack."""
    monkeypatch.delenv("AMENDS_STACK_STATE_DIR", raising=False)
    assert stack.StackSettings().state_dir == dev_key.DEFAULT_STATE_DIR
    assert stack.dev_key_path(stack.StackSettings()) == dev_key.dev_key_file()
    monkeypatch.setenv("AMENDS_STACK_STATE_DIR", str(tmp_path / "elsewhere"))
    assert stack.dev_key_path(stack.StackSettings()) == dev_key.dev_key_file() == (
        tmp_path / "elsewhere" / "run" / "dev-api-key")
    assert "devtools" not in Path(cli_auth.__file__).read_text()


def test_the_dev_key_is_never_sent_to_another_host(settings: stack.StackSettings,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.delenv("AMENDS_TOKEN", raising=False)
    monkeypatch.setenv("AMENDS_CONFIG", str(tmp_path / "none.toml"))
    stack.dev_credentials(settings)
    for local in ("http://127.0.0.1:8002", "http://localhost:8002", "http://[::1]:8002"):
        monkeypatch.setenv("AMENDS_DECISION_URL", local)
        assert cli_auth.load().token is not None, local
    monkeypatch.setenv("AMENDS_DECISION_URL", "https://amends-decision.example.com")
    assert cli_auth.load().token is None
    refused = CliRunner().invoke(cli, ["review", "list"])
    assert refused.exit_code == 1
    assert "no credentials" in refused.output


def test_a_token_sent_without_tls_to_another_host_is_warned_about(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMENDS_TOKEN", "amk_" + "x" * 43)
    monkeypatch.setenv("AMENDS_DECISION_URL", "http://amends-decision.invalid:8002")
    result = CliRunner().invoke(cli, ["review", "list"])
    assert result.exit_code == 1
    assert ("warning: sending credentials to http://amends-decision.invalid:8002/v1/review"
            "?limit=100 without TLS") in result.output


def test_the_customers_page_follows_the_services_ports(
        settings: stack.StackSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMENDS_DECISION_HTTP_PORT", "18202")
    monkeypatch.setenv("AMENDS_FULFILMENT_HTTP_PORT", "18203")
    env = stack.service_env(settings, {})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fulfilment = FulfilmentSettings()
    assert fulfilment.decision_url == "http://127.0.0.1:18202"
    assert fulfilment.customer_page_url.startswith("http://127.0.0.1:18203/v1/customer/")
