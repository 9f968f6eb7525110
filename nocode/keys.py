"""The signing key a platform started on one machine uses, and tokens made with it.

``nocode up`` creates an Ed25519 key pair in the data directory on first start (unless
``JWT_PUBLIC_KEYS`` is configured) and gives its public half to every service and its
private half to the gateway and core. ``nocode token`` and ``nocode demo`` sign with
the same key, so scripts can act as any user on a local platform. The first admin's
password is generated the same way unless ``GATEWAY_ADMIN_PASSWORD`` is set.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from servicekit.auth import TokenIssuer, generate_keypair

LOCAL_KEY_ID = "local"
LOCAL_SERVICE_KEY_ID = "local-service"


@dataclass(frozen=True)
class KeyPair:
    key_id: str
    private_pem: str
    public_pem: str

    def env(self) -> dict[str, str]:
        """What the services are given: every one verifies, the signers also sign."""
        return {
            "JWT_PUBLIC_KEYS": json.dumps({self.key_id: self.public_pem}),
            "JWT_PRIVATE_KEY": self.private_pem,
            "JWT_KEY_ID": self.key_id,
        }


def local_keys(data_dir: Path, name: str = "jwt", key_id: str = LOCAL_KEY_ID) -> KeyPair:
    """The data directory's key pair, created (readable by the owner only) if missing."""
    folder = data_dir / "keys"
    private, public = folder / f"{name}-ed25519.pem", folder / f"{name}-ed25519.pub.pem"
    if not private.exists():
        folder.mkdir(parents=True, exist_ok=True)
        private_pem, public_pem = generate_keypair()
        private.write_text(private_pem)
        os.chmod(private, 0o600)
        public.write_text(public_pem)
    return KeyPair(key_id, private.read_text(), public.read_text())


def local_identity_env(data_dir: Path) -> dict[str, str]:
    """Keys with one job each: the users' key (the gateway signs with it) and core's own
    service key, which signs only the platform's own calls (``SERVICE_JWT_PRIVATE_KEY``)."""
    users = local_keys(data_dir)
    service = local_keys(data_dir, "jwt-service", LOCAL_SERVICE_KEY_ID)
    published = {users.key_id: users.public_pem, service.key_id: service.public_pem}
    return users.env() | {
        "JWT_PUBLIC_KEYS": json.dumps(published),
        "JWT_SERVICE_KEY_IDS": json.dumps([service.key_id]),
        "SERVICE_JWT_PRIVATE_KEY": service.private_pem,
        "SERVICE_JWT_KEY_ID": service.key_id,
    }


def local_admin_password(data_dir: Path) -> str:
    """The first admin's password on a local platform, generated once and kept here."""
    path = data_dir / "admin-password"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(18))
        os.chmod(path, 0o600)
    return path.read_text().strip()


def issuer(data_dir: Path, env: dict[str, str] | None = None) -> TokenIssuer:
    """A signer: ``JWT_PRIVATE_KEY`` from the environment if set, else the local key."""
    env = dict(os.environ) if env is None else env
    issuer_name = env.get("JWT_ISSUER", "nocode-gateway")
    audience = env.get("JWT_AUDIENCE", "nocode")
    if env.get("JWT_PRIVATE_KEY"):
        return TokenIssuer(
            env["JWT_PRIVATE_KEY"], env.get("JWT_KEY_ID", "k1"), issuer_name, audience
        )
    keys = local_keys(data_dir)
    return TokenIssuer(keys.private_pem, keys.key_id, issuer_name, audience)
