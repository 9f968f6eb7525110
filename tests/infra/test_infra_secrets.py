"""k8s/secrets/create-secrets.sh makes the Secrets the manifests read, with a key pair
the services accept. Offline: `--print` renders them with kubectl's client side."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from servicekit.auth import TokenIssuer, TokenVerifier, Unauthorized
from tests.infra.manifests import ROOT, kubectl, kustomize


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_create_secrets_prints_valid_secrets_with_a_working_key_pair() -> None:
    path = f"{Path(kubectl()).parent}{os.pathsep}{os.environ['PATH']}"
    out = subprocess.run(
        ["sh", str(ROOT / "k8s/secrets/create-secrets.sh"), "--print"],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    made = {d["metadata"]["name"]: d for d in yaml.safe_load_all(out) if d}
    template = {d["metadata"]["name"]: d for d in kustomize(ROOT / "k8s/secrets")}
    assert set(made) == set(template)
    for name, secret in made.items():
        kubernetes_validate.validate(secret, "1.37", strict=True)
        assert set(secret["data"]) == set(template[name]["stringData"]), name
        assert secret["metadata"]["namespace"] == "nocode"

    data = {k: base64.b64decode(v).decode() for k, v in made["nocode-secrets"]["data"].items()}
    issuer = TokenIssuer(
        data["JWT_PRIVATE_KEY"], data["JWT_KEY_ID"], "nocode-gateway", "nocode", 60
    )
    verifier = TokenVerifier(json.loads(data["JWT_PUBLIC_KEYS"]), "nocode-gateway", "nocode")
    assert verifier.verify(issuer.issue("test", ["user"])).subject == "test"
    # core's own key signs service tokens for the internal audience, and nothing else.
    services = TokenVerifier(
        json.loads(data["JWT_PUBLIC_KEYS"]),
        "nocode-gateway",
        "nocode",
        service_keys=frozenset({"service"}),
    )
    core = TokenIssuer(
        data["SERVICE_JWT_PRIVATE_KEY"], "service", "nocode-gateway", "nocode-internal", 60
    )
    assert services.verify(core.issue("service:core", ["service"])).roles == {"service"}
    with pytest.raises(Unauthorized):
        services.verify(core.issue("mallory", ["admin"]))

    passwords = {
        k: base64.b64decode(v).decode() for k, v in made["nocode-postgres"]["data"].items()
    }
    for key, url in data.items():
        if key.endswith("_DATABASE_URL"):
            service = key.removesuffix("_DATABASE_URL").lower()
            password = passwords[f"{service.upper()}_DB_PASSWORD"]
            assert url == f"postgresql+asyncpg://{service}:{password}@postgres:5432/{service}"
