"""docker-compose's one-shot `jwt-keys` job: a signing key pair for this compose project.

Writes, once (later runs keep the existing pair, so issued tokens stay valid):
  <public dir>/jwt.env   JWT_PUBLIC_KEYS and JWT_KEY_ID, for every service
  <private dir>/jwt.env  JWT_PRIVATE_KEY, for the signers only (gateway, core, siege)
Each service's entrypoint (with-env-files.sh) exports them. No key is ever committed.

    python jwt_keys.py PUBLIC_DIR PRIVATE_DIR [UID]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from servicekit.auth import generate_keypair  # the job runs in the nocode image

KEY_ID = "compose"


def write(path: Path, values: dict[str, str], mode: int, uid: int) -> None:
    # Single quotes keep the PEM's newlines; neither PEM nor the JSON holds a quote.
    path.write_text("".join(f"{k}='{v}'\n" for k, v in values.items()))
    os.chown(path, uid, uid)
    os.chmod(path, mode)


def main(public_dir: Path, private_dir: Path, uid: int) -> None:
    public_env, private_env = public_dir / "jwt.env", private_dir / "jwt.env"
    if public_env.exists() and private_env.exists():
        print("jwt-keys: key pair already there")
        return
    private_pem, public_pem = generate_keypair()
    write(
        public_env,
        {"JWT_PUBLIC_KEYS": json.dumps({KEY_ID: public_pem}), "JWT_KEY_ID": KEY_ID},
        0o444,
        uid,
    )
    write(private_env, {"JWT_PRIVATE_KEY": private_pem}, 0o400, uid)
    print(f"jwt-keys: new key pair {KEY_ID!r} written")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10001)
