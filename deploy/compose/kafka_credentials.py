"""docker-compose's one-shot `kafka-credentials` job: who may sign in to Kafka, and with what.

Generates, once (later runs keep every password, so a restarted broker and the services
still agree), a password for the broker's own admin and one per service user, and writes:
  <admin dir>/broker_jaas.conf   the broker's JAAS file (KAFKA_OPTS): the admin over PLAIN
                                 on the broker's internal and controller listeners, SCRAM
                                 for the services on its client listener
  <admin dir>/admin.properties   the admin's client settings, for the one-shot jobs and the
                                 broker's healthcheck (kafka-*.sh --command-config)
  <admin dir>/scram-users        "user password" lines: the `kafka-users` job makes each a
                                 SCRAM-SHA-512 credential on the broker
  <user dir>/kafka.env           KAFKA_SASL_PASSWORD for that service alone (its entrypoint,
                                 with-env-files.sh, exports it)
The admin files belong to the Kafka image's user, each kafka.env to the services' user,
all mode 0400. No password is ever committed.

    python kafka_credentials.py ADMIN_DIR BROKER_UID SERVICE_UID USER=DIR [USER=DIR ...]
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

ADMIN = "admin"
STORE = "credentials.json"  # every password, for the next run


def write(path: Path, text: str, uid: int) -> None:
    path.unlink(missing_ok=True)  # the old one may be 0400
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    if os.geteuid() == 0:
        os.chown(path, uid, uid)
    os.chmod(path, 0o400)


def passwords(admin_dir: Path, users: list[str]) -> dict[str, str]:
    """The kept passwords, with a new one for each user who has none yet."""
    store = admin_dir / STORE
    known: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    wanted = {name: known.get(name) or secrets.token_urlsafe(24) for name in [ADMIN, *users]}
    return known | wanted


def broker_jaas(admin_password: str) -> str:
    # One KafkaServer section, a login module per mechanism: PLAIN knows the admin only
    # (user_admin); SCRAM's users live in the cluster's metadata (the kafka-users job).
    return (
        "KafkaServer {\n"
        "  org.apache.kafka.common.security.plain.PlainLoginModule required\n"
        f'    username="{ADMIN}" password="{admin_password}" user_{ADMIN}="{admin_password}";\n'
        "  org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
        "};\n"
    )


def admin_properties(admin_password: str) -> str:
    return (
        "security.protocol=SASL_PLAINTEXT\n"
        "sasl.mechanism=PLAIN\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{admin_password}";\n'
    )


def main(admin_dir: Path, broker_uid: int, service_uid: int, user_dirs: dict[str, Path]) -> None:
    known = passwords(admin_dir, list(user_dirs))
    write(admin_dir / STORE, json.dumps(known), 0)
    os.chmod(admin_dir / STORE, 0o400)
    write(admin_dir / "broker_jaas.conf", broker_jaas(known[ADMIN]), broker_uid)
    write(admin_dir / "admin.properties", admin_properties(known[ADMIN]), broker_uid)
    users = "".join(f"{name} {known[name]}\n" for name in user_dirs)
    write(admin_dir / "scram-users", users, broker_uid)
    for name, directory in user_dirs.items():
        write(directory / "kafka.env", f"KAFKA_SASL_PASSWORD='{known[name]}'\n", service_uid)
    print(f"kafka-credentials: admin and {', '.join(user_dirs)} ready")


if __name__ == "__main__":
    pairs = dict(arg.split("=", 1) for arg in sys.argv[4:])
    main(
        Path(sys.argv[1]),
        int(sys.argv[2]),
        int(sys.argv[3]),
        {k: Path(v) for k, v in pairs.items()},
    )
