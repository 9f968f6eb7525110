"""k8s/: every overlay renders, validates against the Kubernetes schemas, and agrees
with what the services really serve and read. Offline: kubectl kustomize and the
schemas kubernetes-validate ships."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from contracts.topics import ALL_TOPICS
from nocode.services import GATEWAY_ROUTES, SERVICES
from tests.infra.manifests import (
    OVERLAYS,
    PORTS,
    ROOT,
    all_settings,
    by_name,
    k8s_name,
    kustomize,
    of_kind,
    pod_specs,
    rendered,
    served_service,
    settings_of,
)

K8S_VERSION = "1.37"
# Custom resources: no schema ships for them; they must at least be these kinds.
CRD_KINDS = {
    ("networking.istio.io/v1", "Gateway"),
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"),
    ("security.istio.io/v1", "PeerAuthentication"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("telemetry.istio.io/v1", "Telemetry"),
    ("kafka.strimzi.io/v1", "Kafka"),
    ("kafka.strimzi.io/v1", "KafkaNodePool"),
    ("kafka.strimzi.io/v1", "KafkaTopic"),
    ("kafka.strimzi.io/v1", "KafkaUser"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
SERVICE_NAMES = [s.name for s in SERVICES]
KAFKA_USERS = {"model", "target", "core", "notice", "mypage-cqrs"}
DATABASE_NAMES = [s.name for s in SERVICES if s.database]
WITHOUT_DATABASE = {"simulators", *(s.name for s in SERVICES if not s.database)}
SECRET_KEYS = {d["metadata"]["name"]: set(d["stringData"]) for d in kustomize(ROOT / "k8s/secrets")}


def nocode_containers(docs):
    """(service, container) of every container running ``nocode serve NAME``."""
    for _, spec in pod_specs(docs):
        for c in spec["containers"]:
            name = served_service(c.get("args", []))
            if name:
                yield name, c


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_document_validates_against_the_schemas(overlay: str) -> None:
    docs = rendered(overlay)
    assert len(docs) > 40
    custom = []
    for doc in docs:
        kind = (doc["apiVersion"], doc["kind"])
        if kind in CRD_KINDS:
            custom.append(kind)
            assert doc["metadata"]["name"] and isinstance(doc.get("spec"), dict), doc
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert {k for _, k in custom} >= {"VirtualService", "KafkaTopic", "PrometheusRule"}


def test_the_secret_templates_validate_and_hold_placeholders_only() -> None:
    for doc in kustomize(ROOT / "k8s/secrets"):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        for key, value in doc["stringData"].items():
            secret = ("PASSWORD", "PRIVATE_KEY", "DATABASE_URL")
            if any(word in key for word in secret):
                assert "REPLACE_ME" in value, f"{key} must be a placeholder"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_a_deployment_and_a_service_on_its_port(overlay: str) -> None:
    docs = rendered(overlay)
    deployments, services = by_name(docs, "Deployment"), by_name(docs, "Service")
    for name in SERVICE_NAMES:
        port = PORTS[name]
        container = deployments[k8s_name(name)]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["serve", name]
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert services[k8s_name(name)]["spec"]["ports"][0]["port"] == port
    served = {name for name, _ in nocode_containers(docs)}
    assert served >= set(SERVICE_NAMES)
    assert ("simulators" in served) == (overlay == "dev")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_the_health_endpoints_on_the_service_port(overlay: str) -> None:
    for name, c in nocode_containers(rendered(overlay)):
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert c["startupProbe"]["httpGet"]["path"] == "/health/live"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert ports[c[probe]["httpGet"]["port"]] == PORTS[name], (name, probe)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_roll_safely_and_run_locked_down(overlay: str) -> None:
    docs = rendered(overlay)
    for d in of_kind(docs, "Deployment"):
        assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for owner, spec in pod_specs(docs):
        pod_ctx = spec.get("securityContext", {})
        assert pod_ctx.get("runAsNonRoot") is True, owner
        assert spec.get("automountServiceAccountToken") is False, owner
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            ctx = c["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, (owner, c["name"])
            assert ctx["allowPrivilegeEscalation"] is False, (owner, c["name"])
            assert ctx["capabilities"]["drop"] == ["ALL"], (owner, c["name"])
            assert "limits" in c["resources"] and "requests" in c["resources"], owner
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], (owner, c["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_env_var_set_is_a_setting_the_container_reads(overlay: str) -> None:
    docs = rendered(overlay)
    config = by_name(docs, "ConfigMap")["nocode-config"]["data"]
    assert set(config) <= all_settings(), set(config) - all_settings()
    for owner, spec in pod_specs(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            image = c["image"]
            if not ("nocode" in image and "postgres" not in image):
                continue
            service = served_service(c.get("args", [])) or owner
            allowed = settings_of(service) if service in PORTS else all_settings()
            for env in c.get("env", []):
                assert env["name"] in allowed, (owner, c["name"], env["name"])
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] in KAFKA_USERS:  # Strimzi's Secret of the KafkaUser
                    assert (env["name"], ref["key"]) == ("KAFKA_SASL_PASSWORD", "password")
                elif ref:
                    assert env["name"] in SECRET_KEYS[ref["name"]], (owner, env["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_signers_get_the_private_key(overlay: str) -> None:
    for name, c in nocode_containers(rendered(overlay)):
        names = {e["name"] for e in c.get("env", [])}
        assert ("JWT_PRIVATE_KEY" in names) == (name == "gateway"), name
        assert ("SERVICE_JWT_PRIVATE_KEY" in names) == (name == "core"), name
        if name not in WITHOUT_DATABASE:
            assert {"JWT_PUBLIC_KEYS", f"{name.upper()}_DATABASE_URL"} <= names, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_migrates_its_own_database_first(overlay: str) -> None:
    for name, _ in nocode_containers(rendered(overlay)):
        if name in WITHOUT_DATABASE:
            continue
        deployment = by_name(rendered(overlay), "Deployment")[k8s_name(name)]
        (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert f"upgrade('{name}', os.environ['{name.upper()}_DATABASE_URL'])" in init["command"][2]
        assert [e["name"] for e in init["env"]] == [f"{name.upper()}_DATABASE_URL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_routes_reach_each_service_by_its_kubernetes_name(overlay: str) -> None:
    config = by_name(rendered(overlay), "ConfigMap")["nocode-config"]["data"]
    routes = json.loads(config["GATEWAY_ROUTES"])
    assert routes == {
        prefix: f"http://{k8s_name(name)}:{PORTS[name]}" for prefix, name in GATEWAY_ROUTES.items()
    }
    assert config["MODEL_SERVICE_URL"] == f"http://model:{PORTS['model']}"
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == "nocode-kafka-bootstrap:9092"  # Strimzi's name
    (kafka,) = of_kind(rendered(overlay), "Kafka")
    assert kafka["metadata"]["name"] == "nocode"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpas_scale_model_core_target_on_cpu(overlay: str) -> None:
    hpas = by_name(rendered(overlay), "HorizontalPodAutoscaler")
    assert set(hpas) == {"model", "core", "target"}
    deployments = by_name(rendered(overlay), "Deployment")
    for name in hpas:
        assert "replicas" not in deployments[name]["spec"], "the HPA owns the count"
    for name, hpa in hpas.items():
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["averageUtilization"] == 50
        expected = (1, 3) if overlay == "dev" else (2, 6)
        assert (spec["minReplicas"], spec["maxReplicas"]) == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_mounts_its_pvc_at_data(overlay: str) -> None:
    docs = rendered(overlay)
    spec = by_name(docs, "Deployment")["core"]["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "data")
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim in by_name(docs, "PersistentVolumeClaim")
    assert {"name": "data", "mountPath": "/data"} in spec["containers"][0]["volumeMounts"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_are_the_contracts_topics(overlay: str) -> None:
    topics = of_kind(rendered(overlay), "KafkaTopic")
    assert sorted(t["spec"]["topicName"] for t in topics) == sorted(ALL_TOPICS)
    replicas = {t["spec"]["replicas"] for t in topics}
    assert replicas == ({1} if overlay == "dev" else {3})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_postgres_runs_the_shared_init_script_with_every_password(overlay: str) -> None:
    docs = rendered(overlay)
    spec = by_name(docs, "StatefulSet")["postgres"]["spec"]["template"]["spec"]
    init = next(v for v in spec["volumes"] if v["name"] == "init")["configMap"]
    script = by_name(docs, "ConfigMap")[init["name"]]["data"]["10-nocode.sh"]
    assert script == (ROOT / "deploy/postgres/init-databases.sh").read_text()
    assert init["defaultMode"] == 0o555
    (secret,) = spec["containers"][0]["envFrom"]
    needed = {f"{name.upper()}_DB_PASSWORD" for name in DATABASE_NAMES} | {"POSTGRES_PASSWORD"}
    assert SECRET_KEYS[secret["secretRef"]["name"]] == needed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_istio_mesh_is_strict_and_only_the_gateway_is_exposed(overlay: str) -> None:
    docs = rendered(overlay)
    (namespace,) = of_kind(docs, "Namespace")
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] != "Namespace"} == {"nocode"}
    (peer,) = of_kind(docs, "PeerAuthentication")
    assert peer["spec"]["mtls"]["mode"] == "STRICT" and "selector" not in peer["spec"]

    services = by_name(docs, "Service")
    ingress = [v for v in of_kind(docs, "VirtualService") if v["spec"].get("gateways")]
    hosts = {
        r["destination"]["host"] for v in ingress for h in v["spec"]["http"] for r in h["route"]
    }
    assert hosts == {"gateway"}
    for vs in of_kind(docs, "VirtualService"):
        for http in vs["spec"]["http"]:
            assert http["timeout"] and http["retries"]["attempts"] >= 1
            for route in http["route"]:
                port = route["destination"]["port"]["number"]
                assert services[route["destination"]["host"]]["spec"]["ports"][0]["port"] == port
    for dr in of_kind(docs, "DestinationRule"):
        assert dr["spec"]["host"] in services
        assert {"connectionPool", "outlierDetection"} <= set(dr["spec"]["trafficPolicy"])

    # Every mesh service is covered by an ALLOW policy; backends allow only mesh callers.
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(docs, "Deployment")
    }
    allow = [p for p in of_kind(docs, "AuthorizationPolicy") if p["spec"]["action"] == "ALLOW"]
    for name, labels in pods.items():
        policies = [
            p for p in allow if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert policies, f"{name} has no AuthorizationPolicy"
        for p in policies:
            for rule in p["spec"]["rules"]:
                for source in rule["from"]:
                    principals = source["source"]["principals"]
                    assert all(x.startswith("cluster.local/ns/") for x in principals)
    service_accounts = set(by_name(docs, "ServiceAccount"))
    for d in of_kind(docs, "Deployment"):
        assert d["spec"]["template"]["spec"]["serviceAccountName"] in service_accounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_monitoring_resources_select_the_services(overlay: str) -> None:
    docs = rendered(overlay)
    (monitor,) = of_kind(docs, "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        d
        for d in of_kind(docs, "Deployment")
        if "prometheus.io/scrape" in d["spec"]["template"]["metadata"].get("annotations", {})
    ]
    assert {d["metadata"]["name"] for d in scraped} == {k8s_name(n) for n in SERVICE_NAMES}
    for d in scraped:
        template = d["spec"]["template"]["metadata"]
        assert selector.items() <= template["labels"].items()
        container = d["spec"]["template"]["spec"]["containers"][0]
        assert template["annotations"]["prometheus.io/port"] == str(
            container["ports"][0]["containerPort"]
        )
        assert template["annotations"]["prometheus.io/path"] == "/metrics"
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["spec"]["groups"]
    dashboards = [
        c
        for c in of_kind(docs, "ConfigMap")
        if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    (dashboard,) = dashboards
    assert json.loads(dashboard["data"]["nocode.json"])["uid"] == "nocode-overview"


def test_dev_has_the_seeds_siege_pod_and_prod_has_none() -> None:
    (siege,) = of_kind(rendered("dev"), "Pod")
    assert siege["metadata"]["name"] == "siege"
    env = {e["name"]: e.get("value") for e in siege["spec"]["containers"][0]["env"]}
    assert env["NOCODE_GATEWAY_URL"] == f"http://gateway:{PORTS['gateway']}"
    script = (ROOT / "deploy/siege/loadtest.sh").read_text()
    assert '"$gateway/models POST userId=$user&state=request&modelName=TestModel1"' in script
    assert not of_kind(rendered("prod"), "Pod")


# --- transport: who may reach whom, who may write and read what (issue 12, item 9) ----

# What each service's consumers subscribe to (servicekit.runtime subscriptions) and the
# one topic it publishes (contracts: a topic per producing context).
CONSUMES = {
    "model": {"core.events"},
    "target": {"model.events", "core.events"},
    "core": {"model.events", "target.events"},
    "notice": {"model.events", "target.events", "core.events"},
    "mypage_cqrs": {"model.events", "target.events", "core.events"},
}
PUBLISHES = {"model": "model.events", "target": "target.events", "core": "core.events"}


def acl_topics(user: dict, operation: str) -> set[str]:
    return {
        acl["resource"]["name"]
        for acl in user["spec"]["authorization"]["acls"]
        if acl["resource"]["type"] == "topic" and operation in acl["operations"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_users_write_only_their_own_topic_and_read_what_they_consume(overlay: str) -> None:
    docs = rendered(overlay)
    users = by_name(docs, "KafkaUser")
    assert set(users) == KAFKA_USERS
    kafka = by_name(docs, "Kafka")["nocode"]["spec"]["kafka"]
    assert kafka["authorization"] == {"type": "simple"}
    (listener,) = kafka["listeners"]
    assert listener["authentication"] == {"type": "scram-sha-512"}
    for service, reads in CONSUMES.items():
        user = users[k8s_name(service)]
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        own = {PUBLISHES[service]} if service in PUBLISHES else set()
        assert acl_topics(user, "Write") == own | {f"{service}.dlt"}, service
        assert acl_topics(user, "Read") == reads, service
        groups = [
            a["resource"]["name"]
            for a in user["spec"]["authorization"]["acls"]
            if a["resource"]["type"] == "group"
        ]
        assert groups == [service]
        assert not any(
            acl["resource"].get("patternType") == "prefix" or acl["resource"].get("name") == "*"
            for acl in user["spec"]["authorization"]["acls"]
        )
    config = by_name(docs, "ConfigMap")["nocode-config"]["data"]
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    for name, c in nocode_containers(docs):
        env = {e["name"]: e for e in c.get("env", [])}
        if k8s_name(name) in KAFKA_USERS:
            assert env["KAFKA_SASL_USERNAME"]["value"] == k8s_name(name)
            ref = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": k8s_name(name), "key": "password"}
        else:
            assert "KAFKA_SASL_PASSWORD" not in env, name


def peers_of(policy: dict) -> list[dict]:
    return [peer for rule in policy["spec"].get("ingress", []) for peer in rule["from"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_only_the_gateway_in_from_the_ingress(overlay: str) -> None:
    docs = rendered(overlay)
    policies = by_name(docs, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    from_ingress = [
        p
        for p in policies.values()
        if any("namespaceSelector" in peer and "podSelector" in peer for peer in peers_of(p))
    ]
    assert [p["metadata"]["name"] for p in from_ingress] == ["gateway-from-ingress"]
    assert from_ingress[0]["spec"]["podSelector"] == {"matchLabels": {"app": "gateway"}}
    (postgres,) = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"] == {"matchLabels": {"app": "postgres"}}
    ]
    (peer,) = peers_of(postgres)
    (expression,) = peer["podSelector"]["matchExpressions"]
    assert set(expression["values"]) == {k8s_name(s) for s in DATABASE_NAMES}
    assert [port["port"] for rule in postgres["spec"]["ingress"] for port in rule["ports"]] == [
        5432
    ]
    kafka_peers = by_name(docs, "Kafka")["nocode"]["spec"]["kafka"]["listeners"][0]
    (kafka_peer,) = kafka_peers["networkPolicyPeers"]
    (expression,) = kafka_peer["podSelector"]["matchExpressions"]
    assert set(expression["values"]) == KAFKA_USERS
    # Nothing in the namespace admits every pod from everywhere.
    for policy in policies.values():
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), policy["metadata"]["name"]
