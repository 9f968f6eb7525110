"""docker-compose's one-shot `jwt-keys` job: a signing key pair for this compose project.

Writes, once (later runs keep the existing pair, so issued tokens stay valid):
  <public dir>/jwt.env   JWT_PUBLIC_KEYS (both keys), JWT_KEY_ID and JWT_SERVICE_KEY_IDS,
                         for every service
  <private dir>/jwt.env  JWT_PRIVATE_KEY: users' tokens, for the gateway (and siege) only
  <service dir>/jwt.env  SERVICE_JWT_PRIVATE_KEY: core's own key, which signs only the
                         platform's own calls (role service, internal audience)
  <metrics dir>/jwt.env  GATEWAY_METRICS_TOKEN, and <metrics dir>/token the same for
                         Prometheus: the gateway's /metrics answers no one else
Each service's entrypoint (with-env-files.sh) exports them. No key is ever committed.

    python jwt_keys.py PUBLIC_DIR PRIVATE_DIR [UID] [SERVICE_DIR] [METRICS_DIR]
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from servicekit.auth import generate_keypair  # the job runs in the nocode image

KEY_ID = "compose"
SERVICE_KEY_ID = "compose-service"


def write(path: Path, values: dict[str, str], mode: int, uid: int) -> None:
    # Single quotes keep the PEM's newlines; neither PEM nor the JSON holds a quote.
    path.write_text("".join(f"{k}='{v}'\n" for k, v in values.items()))
    os.chown(path, uid, uid)
    os.chmod(path, mode)


def metrics_token(metrics_dir: Path, uid: int) -> None:
    """The bearer token Prometheus scrapes the gateway with (kept across runs)."""
    if (metrics_dir / "token").exists():
        return
    token = secrets.token_urlsafe(32)
    write(metrics_dir / "jwt.env", {"GATEWAY_METRICS_TOKEN": token}, 0o400, uid)
    (metrics_dir / "token").write_text(token)
    os.chmod(metrics_dir / "token", 0o444)  # Prometheus runs as another user
    print("jwt-keys: metrics token written")


def main(public_dir: Path, private_dir: Path, uid: int, service_dir: Path | None = None) -> None:
    public_env, private_env = public_dir / "jwt.env", private_dir / "jwt.env"
    service_env = service_dir / "jwt.env" if service_dir is not None else None
    wanted = [public_env, private_env] + ([service_env] if service_env else [])
    if all(path.exists() for path in wanted):
        print("jwt-keys: key pairs already there")
        return
    private_pem, public_pem = generate_keypair()
    service_private, service_public = generate_keypair()
    published = {KEY_ID: public_pem}
    public = {"JWT_KEY_ID": KEY_ID}
    if service_env is not None:
        published[SERVICE_KEY_ID] = service_public
        public["JWT_SERVICE_KEY_IDS"] = json.dumps([SERVICE_KEY_ID])
        service = {"SERVICE_JWT_PRIVATE_KEY": service_private, "SERVICE_JWT_KEY_ID": SERVICE_KEY_ID}
        write(service_env, service, 0o400, uid)
    write(public_env, {"JWT_PUBLIC_KEYS": json.dumps(published), **public}, 0o444, uid)
    write(private_env, {"JWT_PRIVATE_KEY": private_pem}, 0o400, uid)
    print(f"jwt-keys: new key pairs written ({', '.join(published)})")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        int(sys.argv[3]) if len(sys.argv) > 3 else 10001,
        Path(sys.argv[4]) if len(sys.argv) > 4 else None,
    )
    if len(sys.argv) > 5:
        metrics_token(Path(sys.argv[5]), int(sys.argv[3]))
