"""One platform per data directory, and where every command finds it."""

from __future__ import annotations

from pathlib import Path

from nocode import placement
from nocode.placement import PlatformLock, locate


def test_the_lock_admits_one_holder_and_tells_others_it_is_held(tmp_path: Path) -> None:
    first, second = PlatformLock(tmp_path), PlatformLock(tmp_path)
    assert not placement.running(tmp_path)
    assert first.acquire()
    assert placement.running(tmp_path)
    assert not second.acquire(wait_s=0.1)
    first.release()
    assert not placement.running(tmp_path)
    assert second.acquire(wait_s=0)
    second.release()


def test_without_a_running_platform_commands_use_the_env_rules_of_up(tmp_path: Path) -> None:
    env = {
        "NOCODE_DATA_DIR": str(tmp_path),
        "GATEWAY_PORT": "23080",
        "NOCODE_POSTGRES_PORT": "23432",
        "NOCODE_BROKER_PORT": "23092",
        "MODEL_DATABASE_URL": "postgresql+asyncpg://app:secret@db:5432/model",
    }
    where = locate(env)
    assert where.pid is None
    assert where.services["gateway"] == "http://127.0.0.1:23080"
    assert where.bootstrap_servers == "127.0.0.1:23092"
    assert (
        where.databases["mypage_cqrs"]
        == "postgresql+asyncpg://postgres@127.0.0.1:23432/mypage_cqrs"
    )
    assert where.databases["model"] == env["MODEL_DATABASE_URL"]
    assert where.env()["MYPAGE_CQRS_PORT"] == "8086" and where.env()["GATEWAY_PORT"] == "23080"


def test_a_running_platform_is_found_from_its_placement_file(tmp_path: Path) -> None:
    lock = PlatformLock(tmp_path)
    assert lock.acquire()
    try:
        placement.write(
            tmp_path,
            placement.stamp(
                {
                    "services": {"gateway": "http://127.0.0.1:24080"},
                    "bootstrap_servers": "127.0.0.1:24092",
                    "databases": {"model": "postgresql+asyncpg://app@db:5432/model"},
                    "processes": {"core": {"pid": 7, "restarts": 2}},
                },
                "up",
            ),
        )
        # The environment says otherwise: the running platform's file wins, except a
        # database URL given here (only it may carry the password the file leaves out).
        env = {
            "NOCODE_DATA_DIR": str(tmp_path),
            "GATEWAY_PORT": "8080",
            "KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092",
        }
        where = locate(env)
        assert where.services == {"gateway": "http://127.0.0.1:24080"}
        assert where.bootstrap_servers == "127.0.0.1:24092"
        assert where.processes["core"]["restarts"] == 2 and where.pid is not None
        secret = "postgresql+asyncpg://app:pw@db:5432/model"
        assert locate(env | {"MODEL_DATABASE_URL": secret}).databases["model"] == secret
    finally:
        lock.release()
    assert locate({"NOCODE_DATA_DIR": str(tmp_path)}).pid is None  # stale file: not running
