"""The local stack's Prometheus: the repository's config with the ports the services' own
settings give, the repository's rules, its data under the stack's state directory, listening
on 127.0.0.1 only; a missing binary is one line saying how to install it. Checked on what the
stack writes and runs, without starting Prometheus (tests/integration/test_prometheus.py
starts it)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from devtools import stack
from devtools.cli import app as devtools_cli

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REPO_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PORTS = {"intake": 18001, "decision": 18002, "fulfilment": 18003}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> stack.StackSettings:
    monkeypatch.setenv("AMENDS_STACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AMENDS_STACK_PROMETHEUS_PORT", "19999")
    monkeypatch.delenv("AMENDS_HTTP_PORT", raising=False)
    for name, port in PORTS.items():
        monkeypatch.setenv(f"AMENDS_{name.upper()}_HTTP_PORT", str(port))
    return stack.StackSettings()


def _targets(config: dict[str, Any]) -> dict[str, list[str]]:
    return {job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
            for job in config["scrape_configs"]}


def test_the_services_ports_are_read_from_their_settings(settings: stack.StackSettings,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    assert stack.service_ports() == PORTS
    for name in PORTS:
        monkeypatch.delenv(f"AMENDS_{name.upper()}_HTTP_PORT")
    assert stack.service_ports() == {"intake": 8001, "decision": 8002, "fulfilment": 8003}


def test_each_job_scrapes_its_service_on_the_port_its_settings_give() -> None:
    config = stack.prometheus_config(PORTS)
    assert _targets(config) == {"amends-intake": ["127.0.0.1:18001"],
                                "amends-decision": ["127.0.0.1:18002"],
                                "amends-fulfilment": ["127.0.0.1:18003"]}


def test_it_is_the_repositorys_config_and_rules_apart_from_ports_and_interval() -> None:
    ours = yaml.safe_load(REPO_CONFIG.read_text())
    local = stack.prometheus_config(PORTS)
    assert local["global"]["external_labels"] == ours["global"]["external_labels"]
    assert {k: v for k, v in local["global"].items() if k.endswith(("interval", "timeout"))} \
        == dict.fromkeys(("scrape_interval", "scrape_timeout", "evaluation_interval"), "5s")
    assert [(j["job_name"], j["metrics_path"]) for j in local["scrape_configs"]] \
        == [(j["job_name"], j["metrics_path"]) for j in ours["scrape_configs"]]
    # The rule files are named absolutely, since the generated config lives elsewhere; they
    # match the repository's rule files and nothing else.
    rules = sorted(match for pattern in map(Path, local["rule_files"])
                   for match in pattern.parent.glob(pattern.name))
    assert all(Path(pattern).is_absolute() for pattern in local["rule_files"])
    assert rules == sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
    assert rules


def test_a_job_for_no_service_is_a_clear_error() -> None:
    with pytest.raises(stack.StackError, match="job 'amends-intake' for no service"):
        stack.prometheus_config({"decision": 1, "fulfilment": 2})


def test_it_listens_on_127_0_0_1_and_keeps_its_data_under_the_state_dir(
        settings: stack.StackSettings) -> None:
    argv = stack.prometheus_argv(settings, "prometheus", Path("config.yml"))
    assert "--web.listen-address=127.0.0.1:19999" in argv
    assert f"--storage.tsdb.path={settings.state_dir / 'prometheus-data'}" in argv
    assert settings.prometheus_url == "http://127.0.0.1:19999"
    rows = {row.name: row.address for row in stack.status(settings)}
    assert rows["prometheus"] == "127.0.0.1:19999"
    assert rows["intake"] == "127.0.0.1:18001"


def test_stack_down_stops_prometheus_too(settings: stack.StackSettings) -> None:
    assert stack.down(settings)["prometheus"] == "was not running"


def test_a_missing_binary_says_how_to_install_it(settings: stack.StackSettings,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with socket.socket() as probe:  # a port nobody listens on, so the binary is what fails
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    settings = settings.model_copy(update={"prometheus_port": free})
    with pytest.raises(stack.StackError,
                       match=r"`prometheus` was not found on PATH: run `make tools`"):
        stack.start_prometheus(settings)


def test_a_port_taken_by_someone_else_is_one_clear_error(settings: stack.StackSettings
                                                         ) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = settings.model_copy(update={"prometheus_port": port})
        with pytest.raises(stack.StackError, match=f"port {port} is already taken.*"
                                                   "AMENDS_STACK_PROMETHEUS_PORT"):
            stack.start_prometheus(settings)


def test_stack_up_without_prometheus_still_starts_the_rest_and_says_how(
        settings: stack.StackSettings, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    started: list[str] = []

    def up(*_: object, **__: object) -> dict[str, str]:
        started.append("up")
        return {"ferretdb": "started", "kafka": "started"}

    monkeypatch.setattr(stack, "up", up)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AMENDS_STACK_PROMETHEUS_PORT", str(probe.getsockname()[1]))
    shown = CliRunner().invoke(devtools_cli, ["stack", "up"])
    assert shown.exit_code == 0, shown.output
    assert started == ["up"]
    said = " ".join(shown.output.split())
    assert "kafka: started" in said
    assert "prometheus: not started: `prometheus` was not found on PATH: run `make tools`" \
        in said
