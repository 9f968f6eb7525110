"""The Kafka sign-in settings reach aiokafka in a real service process and in ``nocode
events tail``, and the password reaches no log line (issue 12, item 9).

The broker is the embedded one (Tansu), which offers no SASL mechanism without
``--authentication`` (and with it, users can be created only by a signed-in client, which
its memory storage never has): so a client that really asks to sign in is refused with
UnsupportedSaslMechanism, where a PLAINTEXT one connects. That refusal, in the service's own
log, is the proof the settings reached the client; the password must be in no line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts.topics import MODEL_EVENTS
from tests.support import AUTH_ENV, free_port

pytestmark = pytest.mark.connected

PASSWORD = "kafka-pw-4f1d9c2e7b"
NOCODE = str(Path(sys.executable).parent / "nocode")


def sasl_env(bootstrap: str) -> dict[str, str]:
    return {
        **os.environ,
        **AUTH_ENV,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "mypage-cqrs",
        "KAFKA_SASL_PASSWORD": PASSWORD,
        "LOG_LEVEL": "DEBUG",  # aiokafka's own connection logging too
    }


def test_a_service_signs_in_with_its_settings_and_never_logs_the_password(
    mypage_db: str, topics: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **sasl_env(topics),
        "MYPAGE_CQRS_DATABASE_URL": mypage_db,
        "MYPAGE_CQRS_PORT": str(port),
        "LOG_FILE": str(tmp_path / "mypage.log"),
    }
    process = subprocess.Popen(
        [NOCODE, "serve", "mypage_cqrs"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        refused = False
        while time.monotonic() < deadline and not refused:
            time.sleep(0.5)
            log = (
                (tmp_path / "mypage.log").read_text() if (tmp_path / "mypage.log").exists() else ""
            )
            refused = "UnsupportedSaslMechanism" in log
        assert refused, "the producer never tried to sign in"
    finally:
        process.terminate()
        stdout, _ = process.communicate(timeout=30)
    lines = stdout.splitlines()
    assert any("broker not reachable yet" in line for line in lines)
    assert len(lines) > 5
    assert not [line for line in lines if PASSWORD in line]
    assert PASSWORD not in (tmp_path / "mypage.log").read_text()


def test_events_tail_signs_in_with_the_same_settings(topics: str) -> None:
    plain = subprocess.run(
        [NOCODE, "events", "tail", MODEL_EVENTS, "--max", "0"],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": topics},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 0, plain.stdout + plain.stderr  # PLAINTEXT: in, nothing to show
    signed = subprocess.run(
        [NOCODE, "events", "tail", MODEL_EVENTS, "--max", "0"],
        env=sasl_env(topics),
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = signed.stdout + signed.stderr
    assert signed.returncode != 0
    assert "UnsupportedSaslMechanism" in output or "Unable to bootstrap" in output, output
    assert PASSWORD not in output
