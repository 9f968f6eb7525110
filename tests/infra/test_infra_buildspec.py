"""buildspec.yml: it parses, runs the README's test command, builds and pushes every
service's image tagged with the commit, and deploys the overlay with those images."""

from __future__ import annotations

import os
import re
import subprocess

import yaml

from nocode.services import SERVICES
from tests.infra.manifests import ROOT, k8s_name, kubectl, served_service

BUILDSPEC = yaml.safe_load((ROOT / "buildspec.yml").read_text())
COMMANDS = [c for phase in BUILDSPEC["phases"].values() for c in phase.get("commands", [])]
VARIABLES = BUILDSPEC["env"]["variables"]


def test_buildspec_phases_run_in_order_and_stop_on_failure() -> None:
    assert BUILDSPEC["version"] == 0.2
    assert list(BUILDSPEC["phases"]) == ["install", "pre_build", "build", "post_build"]
    assert all(p["on-failure"] == "ABORT" for p in BUILDSPEC["phases"].values())


def test_buildspec_runs_the_readme_test_command_before_building() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    assert "make test" in BUILDSPEC["phases"]["pre_build"]["commands"]
    assert not any("docker" in c for c in BUILDSPEC["phases"]["install"]["commands"])


def test_buildspec_builds_and_pushes_every_service_tagged_with_the_commit() -> None:
    services = VARIABLES["NOCODE_SERVICES"].split()
    assert services == [k8s_name(s.name) for s in SERVICES]
    build = "\n".join(BUILDSPEC["phases"]["build"]["commands"])
    assert 'docker build --pull --tag "nocode:$IMAGE_TAG" .' in build
    assert "for service in $NOCODE_SERVICES; do" in build
    assert '"$ECR_REGISTRY/$ECR_REPOSITORY_PREFIX$service:$IMAGE_TAG"' in build
    push = "\n".join(BUILDSPEC["phases"]["post_build"]["commands"])
    assert 'docker push "$ECR_REGISTRY/$ECR_REPOSITORY_PREFIX$service:$IMAGE_TAG"' in push
    assert 'export IMAGE_TAG="$CODEBUILD_RESOLVED_SOURCE_VERSION"' in COMMANDS
    assert any(c.startswith(".venv/bin/kubectl apply -f manifests.yaml") for c in COMMANDS)


def test_buildspec_holds_no_secret() -> None:
    text = (ROOT / "buildspec.yml").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"(?i)(password|token|secret)\s*[:=]\s*\S", text)
    assert "--insecure-skip-tls-verify" not in text
    assert set(BUILDSPEC["env"]) == {"shell", "variables"}  # no inline secrets section
    assert set(VARIABLES) == {"KUSTOMIZE_OVERLAY", "NOCODE_SERVICES", "ECR_REPOSITORY_PREFIX"}


def test_the_deploy_step_sets_every_image_to_the_commit(tmp_path) -> None:
    """Runs buildspec's render step (k8s/render.sh) for real, offline."""
    registry, tag = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com", "0123abcd" * 5
    env = {**os.environ, "KUBECTL": kubectl(), "ECR_REPOSITORY_PREFIX": "nocode-"}
    out = subprocess.run(
        [
            "sh",
            str(ROOT / "k8s/render.sh"),
            VARIABLES["KUSTOMIZE_OVERLAY"],
            registry,
            tag,
            VARIABLES["NOCODE_SERVICES"],
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    seen = set()
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            name = k8s_name(served_service(spec["containers"][0]["args"]))
            assert c["image"] == f"{registry}/nocode-{name}:{tag}"
            seen.add(name)
    assert seen == {k8s_name(s.name) for s in SERVICES}
    assert not list((ROOT / "k8s/overlays").glob(".render.*")), "render.sh cleans up"
