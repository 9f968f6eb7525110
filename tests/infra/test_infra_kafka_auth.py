"""docker-compose's Kafka wants a password on every listener and enforces ACLs (issue 12,
item 9): the broker's SASL listeners, JAAS and authorizer; each service signing in as its
own user with a generated password; ACLs equal to k8s's KafkaUsers."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from servicekit.kafka import client_security
from servicekit.settings import ServiceSettings
from tests.infra.manifests import ROOT, by_name, compose, k8s_name, rendered, served_service

KAFKA_USERS = {"model", "target", "core", "notice", "mypage-cqrs"}
ADMIN_DIR = "/run/nocode/kafka-admin"


def load_credentials_job():
    spec = importlib.util.spec_from_file_location(
        "kafka_credentials", ROOT / "deploy/compose/kafka_credentials.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def served() -> dict[str, dict]:
    """Compose name -> definition, for each container running ``nocode serve NAME``."""
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if served_service(svc.get("command", []))
    }


def mounts(svc: dict) -> dict[str, str]:
    """Volume -> path in the container."""
    return {v.split(":")[0]: v.split(":")[1] for v in svc.get("volumes", [])}


def test_every_kafka_listener_wants_a_password_and_acls_are_enforced() -> None:
    kafka = compose()["services"]["kafka"]
    env = kafka["environment"]
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = [entry.split(":")[0] for entry in env["KAFKA_LISTENERS"].split(",")]
    assert set(protocols) == set(listeners) == {"CLIENT", "CONTROLLER", "INTERNAL"}
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}  # no PLAINTEXT listener at all
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "CLIENT://kafka:9092,INTERNAL://kafka:9094"
    # The services' listener: SCRAM only; the admin's: PLAIN against the JAAS file.
    assert env["KAFKA_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_LISTENER_NAME_INTERNAL_SASL_ENABLED_MECHANISMS"] == "PLAIN"
    assert env["KAFKA_LISTENER_NAME_CONTROLLER_SASL_ENABLED_MECHANISMS"] == "PLAIN"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] == "PLAIN"
    assert env["KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL"] == "PLAIN"
    assert env["KAFKA_OPTS"] == f"-Djava.security.auth.login.config={ADMIN_DIR}/broker_jaas.conf"
    assert mounts(kafka)["kafka-admin"] == ADMIN_DIR
    assert kafka["depends_on"]["kafka-credentials"]["condition"] == (
        "service_completed_successfully"
    )
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert env["KAFKA_SUPER_USERS"] == "User:admin"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    # The healthcheck and the topics job sign in as the admin too.
    assert kafka["healthcheck"]["test"][-3:] == [
        "localhost:9094",
        "--command-config",
        f"{ADMIN_DIR}/admin.properties",
    ]
    (script,) = compose()["services"]["kafka-topics"]["command"]
    assert "--bootstrap-server kafka:9094" in script
    assert f"--command-config {ADMIN_DIR}/admin.properties" in script


def test_each_kafka_service_signs_in_as_its_own_user_and_no_one_else_can() -> None:
    services = compose()["services"]
    for compose_name, svc in served().items():
        env = svc["environment"]
        own = {v for v in mounts(svc) if v.startswith("kafka-")}
        if compose_name in KAFKA_USERS:
            assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", compose_name
            assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", compose_name
            assert env["KAFKA_SASL_USERNAME"] == compose_name
            assert "KAFKA_SASL_PASSWORD" not in env  # from its volume, never in the file
            assert own == {f"kafka-{compose_name}"}, compose_name
            assert mounts(svc)[f"kafka-{compose_name}"] == "/run/nocode/kafka"
            assert svc["depends_on"]["kafka-users"]["condition"] == (
                "service_completed_successfully"
            )
        else:  # the gateway, the console, the simulators: no Kafka user at all
            assert own == set(), compose_name
            assert "KAFKA_SASL_USERNAME" not in env, compose_name
    holders = {n for n, s in services.items() if "kafka-admin" in mounts(s)}
    assert holders == {"kafka", "kafka-credentials", "kafka-topics", "kafka-users"}
    # The entrypoint exports the password file the volume holds.
    assert "/run/nocode/*/kafka.env" in (ROOT / "deploy/compose/with-env-files.sh").read_text()
    # The credentials job writes a password for exactly these users, each in its volume.
    job = services["kafka-credentials"]
    users = dict(arg.split("=", 1) for arg in job["entrypoint"][5:])
    assert set(users) == KAFKA_USERS
    for user, path in users.items():
        assert mounts(job)[f"kafka-{user}"] == path
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"KAFKA_SASL_PASSWORD|sasl\.jaas\.config|user_admin", text)


def compose_acls() -> set[tuple[str, str, str, str]]:
    rows = compose()["services"]["kafka-users"]["environment"]["ACLS"].splitlines()
    out = set()
    for row in filter(str.strip, rows):
        user, kind, name, operations = row.split()
        out |= {(user, kind, name, op) for op in operations.split(",")}
    return out


def k8s_acls() -> set[tuple[str, str, str, str]]:
    out = set()
    for name, user in by_name(rendered("dev"), "KafkaUser").items():
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            target = resource.get("name", "kafka-cluster")  # kafka-acls.sh --cluster
            out |= {(name, resource["type"], target, op) for op in acl["operations"]}
    return out


def test_compose_acls_are_the_kafkausers_acls() -> None:
    acls = compose_acls()
    assert acls == k8s_acls()
    assert {user for user, *_ in acls} == KAFKA_USERS
    writes = {(u, n) for u, kind, n, op in acls if op == "Write"}
    assert ("model", "model.events") in writes and ("target", "model.events") not in writes
    assert not any(name == "*" for _, _, name, _ in acls)


def test_the_users_job_turns_the_table_into_credentials_and_acls(tmp_path: Path) -> None:
    """Run deploy/compose/kafka-users.sh with Kafka's tools replaced by recorders."""
    bin_dir, secrets = tmp_path / "bin", tmp_path / "secrets"
    bin_dir.mkdir()
    secrets.mkdir()
    calls = tmp_path / "calls"
    for tool in ("kafka-configs.sh", "kafka-acls.sh"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (bin_dir / tool).chmod(0o755)
    (secrets / "scram-users").write_text("model pw-model\nnotice pw-notice\n")
    env = {
        "PATH": os.environ["PATH"],
        "KAFKA_BIN": str(bin_dir),
        "KAFKA_SECRETS": str(secrets),
        "ACLS": compose()["services"]["kafka-users"]["environment"]["ACLS"],
    }
    subprocess.run(["sh", str(ROOT / "deploy/compose/kafka-users.sh")], env=env, check=True)
    lines = calls.read_text().splitlines()
    admin = f"--bootstrap-server kafka:9094 --command-config {secrets}/admin.properties"
    assert lines[0] == (
        f"kafka-configs.sh {admin} --alter --entity-type users --entity-name model "
        "--add-config SCRAM-SHA-512=[iterations=8192,password=pw-model]"
    )
    assert lines[1].endswith(
        "--entity-name notice --add-config SCRAM-SHA-512=[iterations=8192,password=pw-notice]"
    )
    acl_lines = lines[2:]
    assert len(acl_lines) == len(
        compose()["services"]["kafka-users"]["environment"]["ACLS"].strip().splitlines()
    )
    assert (
        f"kafka-acls.sh {admin} --add --allow-principal User:model "
        "--operation Write --operation Describe --topic model.events"
    ) in acl_lines
    assert (
        f"kafka-acls.sh {admin} --add --allow-principal User:mypage-cqrs "
        "--operation Read --operation Describe --group mypage_cqrs"
    ) in acl_lines
    assert any(line.endswith("User:core --operation Describe --cluster") for line in acl_lines)


def test_the_credentials_job_generates_each_password_once_kept_private(tmp_path: Path) -> None:
    job = load_credentials_job()
    admin = tmp_path / "admin"
    users = {"model": tmp_path / "model", "notice": tmp_path / "notice"}
    for directory in (admin, *users.values()):
        directory.mkdir()
    uid = os.getuid()
    job.main(admin, uid, uid, users)
    first = {str(p): p.read_text() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o400, path
    store = json.loads((admin / "credentials.json").read_text())
    assert set(store) == {"admin", "model", "notice"}
    assert len(set(store.values())) == 3 and all(len(p) >= 32 for p in store.values())
    jaas = (admin / "broker_jaas.conf").read_text()
    assert f'user_admin="{store["admin"]}"' in jaas
    assert "ScramLoginModule required;" in jaas
    assert store["model"] not in jaas  # the services' passwords live in the cluster only
    properties = (admin / "admin.properties").read_text()
    assert "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n" in properties
    assert (users["model"] / "kafka.env").read_text() == (
        f"KAFKA_SASL_PASSWORD='{store['model']}'\n"
    )
    assert store["notice"] not in (users["model"] / "kafka.env").read_text()
    assert (admin / "scram-users").read_text() == (
        f"model {store['model']}\nnotice {store['notice']}\n"
    )
    job.main(admin, uid, uid, users)  # the next `docker compose up`
    again = {str(p): p.read_text() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert again == first


def test_what_the_service_reads_from_its_file_signs_it_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared env, its username and the exported KAFKA_SASL_PASSWORD make the SCRAM
    options every client of that service gets (servicekit.kafka.client_security)."""
    model = compose()["services"]["model"]["environment"]
    for var in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME"):
        monkeypatch.setenv(var, model[var])
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "generated")
    assert client_security(ServiceSettings()) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": k8s_name("model"),
        "sasl_plain_password": "generated",
    }
