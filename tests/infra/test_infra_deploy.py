"""Deploying to a new EKS without traps: the README's cluster steps in an order that
works, the storage classes and Kiali values they apply, and a prod overlay that will
not render without the build's images."""

from __future__ import annotations

import os
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.infra.manifests import (
    ROOT,
    TEST_REGISTRY,
    TEST_TAG,
    by_name,
    kubectl,
    of_kind,
    pod_specs,
    rendered,
)

README = (ROOT / "README.md").read_text()
ADDONS = ROOT / "k8s/addons"


def test_prod_does_not_render_without_the_build_images() -> None:
    bare = subprocess.run(
        [kubectl(), "kustomize", str(ROOT / "k8s/overlays/prod")], capture_output=True, text=True
    )
    assert bare.returncode != 0
    assert "images-set-by-render.sh" in bare.stderr
    # render.sh writes that component for one render only
    rendered("prod")
    assert not (ROOT / "k8s/overlays/prod/images-set-by-render.sh").exists()


def test_every_prod_image_is_pinned_and_nocodes_are_the_builds() -> None:
    images = [
        c["image"]
        for _, spec in pod_specs(rendered("prod"))
        for c in spec.get("initContainers", []) + spec["containers"]
    ]
    nocode = [i for i in images if "nocode-" in i]
    assert len(nocode) >= 12  # six services, each a container and a migrating init container
    assert all(re.fullmatch(rf"{TEST_REGISTRY}/nocode-[a-z-]+:{TEST_TAG}", i) for i in nocode)
    for image in images:
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


def test_render_refuses_an_empty_tag() -> None:
    result = subprocess.run(
        ["sh", str(ROOT / "k8s/render.sh"), "k8s/overlays/prod", TEST_REGISTRY, ""],
        cwd=ROOT,
        env={**os.environ, "KUBECTL": kubectl()},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "must not be empty" in result.stderr


def test_storage_classes_gp3_default_and_efs_for_cores_shared_data() -> None:
    docs = [d for d in yaml.safe_load_all((ADDONS / "storage-classes.yaml").read_text()) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37", strict=True)
    classes = by_name(docs, "StorageClass")
    defaults = [
        name
        for name, c in classes.items()
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert defaults == ["gp3"]
    assert classes["gp3"]["provisioner"] == "ebs.csi.aws.com"
    assert classes["gp3"]["parameters"]["type"] == "gp3"
    assert classes["efs-sc"]["provisioner"] == "efs.csi.aws.com"
    (pvc,) = of_kind(rendered("prod"), "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "efs-sc"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    (dev_pvc,) = of_kind(rendered("dev"), "PersistentVolumeClaim")
    assert "storageClassName" not in dev_pvc["spec"]  # the default: gp3


def helm_release(chart: str) -> tuple[str, str]:
    """(release, namespace) of ``helm install RELEASE CHART -n NS`` in the README."""
    match = re.search(rf"helm install (\S+) {re.escape(chart)} \\?\s*-n (\S+)", README)
    assert match, f"README does not install {chart}"
    return match.group(1), match.group(2)


def test_kiali_reads_kube_prometheus_stacks_prometheus() -> None:
    values = yaml.safe_load((ADDONS / "kiali-values.yaml").read_text())
    release, namespace = helm_release("prometheus-community/kube-prometheus-stack")
    services = values["external_services"]
    assert services["prometheus"]["url"] == f"http://{release}-prometheus.{namespace}:9090"
    assert services["grafana"]["internal_url"] == f"http://{release}-grafana.{namespace}:80"
    assert "kiali-values.yaml" in README


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("kubectl create namespace nocode", "helm install strimzi"),
        ("helm install strimzi", "storage-classes.yaml | kubectl apply"),
        ("aws-ebs-csi-driver", "storage-classes.yaml | kubectl apply"),
        ("storage-classes.yaml | kubectl apply", "istioctl install"),
        ("istioctl install", "helm install kube-prometheus-stack"),
        ("helm install kube-prometheus-stack", "helm install kiali-server"),
        ("helm install kiali-server", "helm install loki"),
        ("helm install loki", "k8s/secrets/create-secrets.sh     #"),
        ("k8s/secrets/create-secrets.sh     #", "k8s/render.sh k8s/overlays/prod"),
    ],
)
def test_the_readmes_cluster_steps_come_in_an_order_that_works(before: str, after: str) -> None:
    assert README.count(before) >= 1 and README.count(after) >= 1, (before, after)
    assert README.index(before) < README.index(after), f"{before!r} must come before {after!r}"
