"""What ``nocode up`` prints once everything is ready: where each part listens, and
commands that work as printed: the real gateway port and a token that the gateway takes.

The token is signed for the seed's user ``test`` with the key the gateway trusts (the
configured ``JWT_PRIVATE_KEY``, else the data directory's own), as ``nocode token`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

DEMO_USER = "test"  # the seed's own user; a signed token for a name not in the store stands
TOKEN_TTL_S = 12 * 3600  # a working day; the gateway refuses any longer than a day


def banner(
    rows: Sequence[tuple[str, str]],
    *,
    gateway_url: str,
    token: str,
    elapsed_s: float,
    admin_password_file: Path | None,
) -> list[str]:
    lines = [f"nocode is up ({elapsed_s:.1f} s):"]
    lines += [f"  {name:<12} {where}" for name, where in rows]
    hours = TOKEN_TTL_S // 3600
    lines += [
        "",
        f'Try it as user "{DEMO_USER}" (this token is good for {hours} h; '
        "`nocode token --user NAME` signs others):",
        f"  TOKEN={token}",
        f'  curl -s {gateway_url}/models -H "Authorization: Bearer $TOKEN" '
        f"-d userId={DEMO_USER} -d modelName=TestModel10",
        f'  curl -s "{gateway_url}/myRequests?userId={DEMO_USER}" '
        '-H "Authorization: Bearer $TOKEN"',
    ]
    if admin_password_file is not None:
        lines += [
            "Sign in as the admin (approves requests; the answer's access_token is the token):",
            f"  curl -s {gateway_url}/auth/token -d username=admin "
            f'-d password="$(cat {admin_password_file})"',
        ]
    lines += ["A process that exits is restarted; Ctrl-C stops everything.", ""]
    return lines
