"""docker-compose.yml: valid against the Compose specification (the schema is vendored
here, so no network), and in agreement with the services it starts."""

from __future__ import annotations

import json
import re
import stat
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from contracts.topics import ALL_TOPICS
from nocode.services import GATEWAY_ROUTES, SERVICES, SIMULATORS
from tests.infra.manifests import (
    PORTS,
    ROOT,
    all_settings,
    compose,
    k8s_name,
    served_service,
    settings_of,
)

SCHEMA = json.loads((ROOT / "tests/infra/compose-spec.json").read_text())
NOCODE_IMAGES = ("nocode:local", "nocode-siege:local")
SERVICE_NAMES = [s.name for s in SERVICES]
DATABASE_NAMES = [s.name for s in SERVICES if s.database]


def nocode_services() -> dict[str, dict]:
    """Compose services that run the nocode image, by compose name."""
    return {n: s for n, s in compose()["services"].items() if s.get("image") in NOCODE_IMAGES}


def served() -> dict[str, tuple[str, dict]]:
    """Platform service name -> (compose name, definition), for each `nocode serve NAME`."""
    out = {}
    for compose_name, svc in nocode_services().items():
        name = served_service(svc.get("command", []))
        if name:
            out[name] = (compose_name, svc)
    return out


def test_compose_file_validates_against_the_compose_specification() -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(compose())


def test_the_schema_catches_a_mistake() -> None:
    broken = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    broken["services"]["model"]["healthcheck"]["tset"] = ["CMD", "true"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(broken)


def test_every_service_and_the_simulators_are_started_with_nocode_serve() -> None:
    assert set(served()) == {*SERVICE_NAMES, SIMULATORS.name}
    for name, (compose_name, svc) in served().items():
        assert compose_name == k8s_name(name)
        assert svc["command"] == ["nocode", "serve", name]
        assert svc["environment"]["SERVICE_HOST"] == "0.0.0.0"


def test_healthchecks_hit_each_service_ready_endpoint_on_its_port() -> None:
    for name, (_, svc) in served().items():
        test = svc["healthcheck"]["test"]
        assert test[:2] == ["CMD", "nocode-healthcheck"], name
        url = urlparse(test[2])
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", PORTS[name], "/health/ready")


def test_services_start_after_setup_and_after_what_they_call() -> None:
    services = compose()["services"]
    for name, (_, svc) in served().items():
        if name == SIMULATORS.name:
            continue
        deps = svc["depends_on"]
        for job in ("migrate", "kafka-topics", "jwt-keys"):
            assert deps[job]["condition"] == "service_completed_successfully", (name, job)
        for infra in ("postgres", "kafka"):
            assert deps[infra]["condition"] == "service_healthy", (name, infra)
        for dep, cond in deps.items():
            assert dep in services, (name, dep)
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
    gateway_deps = served()["gateway"][1]["depends_on"]
    for backend in set(GATEWAY_ROUTES.values()):
        assert gateway_deps[k8s_name(backend)]["condition"] == "service_healthy"
    assert served()["core"][1]["depends_on"]["model"]["condition"] == "service_healthy"


def test_every_env_var_set_on_a_nocode_container_is_a_setting_it_reads() -> None:
    for compose_name, svc in nocode_services().items():
        name = served_service(svc.get("command", []))
        allowed = settings_of(name) if name else all_settings()
        for var in svc.get("environment", {}):
            assert var in allowed, (compose_name, var)


def test_migrate_gets_every_database_url_and_postgres_makes_every_database() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["migrate"]
    urls = services["migrate"]["environment"]
    assert set(urls) == {f"{n.upper()}_DATABASE_URL" for n in DATABASE_NAMES}
    for name in DATABASE_NAMES:
        own = served()[name][1]["environment"][f"{name.upper()}_DATABASE_URL"]
        assert own == urls[f"{name.upper()}_DATABASE_URL"]
        assert own.startswith(f"postgresql+asyncpg://{name}:") and own.endswith(f"/{name}")
    postgres = services["postgres"]["environment"]
    assert {f"{n.upper()}_DB_PASSWORD" for n in DATABASE_NAMES} <= set(postgres)
    script = ROOT / "deploy/postgres/init-databases.sh"
    assert script.stat().st_mode & stat.S_IXUSR, "the postgres image sources a non-executable"
    (loop,) = re.findall(r"for service in ([^;]+);", script.read_text())
    assert loop.split() == DATABASE_NAMES


def test_topics_job_creates_the_contracts_topics() -> None:
    env = compose()["services"]["kafka-topics"]["environment"]
    assert env["TOPICS"].split() == list(ALL_TOPICS)
    assert compose()["services"]["kafka"]["image"].startswith("apache/kafka:")


def test_gateway_and_core_reach_the_others_by_compose_name() -> None:
    gateway_env = served()["gateway"][1]["environment"]
    routes = json.loads(gateway_env["GATEWAY_ROUTES"])
    assert routes == {
        prefix: f"http://{k8s_name(name)}:{PORTS[name]}" for prefix, name in GATEWAY_ROUTES.items()
    }
    core_env = served()["core"][1]["environment"]
    assert core_env["MODEL_SERVICE_URL"] == f"http://model:{PORTS['model']}"
    simulators = f"http://simulators:{PORTS['simulators']}"
    assert core_env["VERTICA_URL"] == simulators + "/vertica"
    assert core_env["MIDAS_URL"] == simulators + "/midas"
    assert served()["notice"][1]["environment"]["CHAT_WEBHOOK_URL"] == simulators + "/chat/webhook"


def test_only_the_signers_mount_the_private_key() -> None:
    for compose_name, svc in nocode_services().items():
        mounts = [v.split(":")[0] for v in svc.get("volumes", [])]
        name = served_service(svc.get("command", []))
        signer = name == "gateway" or compose_name in ("siege", "jwt-keys")
        assert ("jwt-private" in mounts) == signer, compose_name
        # core's own key signs only service tokens; nobody else holds it.
        assert ("jwt-service" in mounts) == (name == "core" or compose_name == "jwt-keys")


def test_prometheus_scrapes_every_service_and_grafana_gets_the_dashboard() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{k8s_name(n)}:{PORTS[n]}" for n in SERVICE_NAMES}
    services = compose()["services"]
    grafana_mounts = [v.split(":")[:2] for v in services["grafana"]["volumes"]]
    assert ["./deploy/grafana/dashboards", "/var/lib/grafana/dashboards"] in grafana_mounts
    prometheus_mounts = [v.split(":")[0] for v in services["prometheus"]["volumes"]]
    assert "./deploy/prometheus/rules" in prometheus_mounts
    # No default or anonymous Grafana; the gateway's published /metrics needs a token
    # that only Prometheus (and the gateway) mount.
    grafana_env = services["grafana"]["environment"]
    assert grafana_env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert ":?" in grafana_env["GF_SECURITY_ADMIN_PASSWORD"]
    assert job["authorization"]["credentials_file"] == "/etc/prometheus/secrets/token"
    holders = {
        name
        for name, svc in services.items()
        if any("metrics-token:" in v for v in svc.get("volumes", []))
    }
    assert holders == {"gateway", "prometheus", "jwt-keys"}
    assert services["siege"]["profiles"] == ["loadtest"]
    assert services["siege"]["command"][0] == "nocode-loadtest"
