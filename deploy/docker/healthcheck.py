#!/usr/bin/env python3
"""The image's HEALTHCHECK: GET a service's ``/health/ready`` and exit 0 only on 200.

``nocode-healthcheck URL`` checks that URL (docker-compose.yml gives each service its
own). Without an argument it checks the service this container runs, read from PID 1's
command line (``nocode serve NAME``), on ``NAME_PORT`` or the service's default port.
A container running anything else (``nocode migrate``) has nothing to check.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from nocode.services import SERVICES, SIMULATORS


def own_url() -> str | None:
    args = [a.decode() for a in Path("/proc/1/cmdline").read_bytes().split(b"\0") if a]
    if "serve" not in args or args.index("serve") + 1 >= len(args):
        return None
    name = args[args.index("serve") + 1]
    spec = {s.name: s for s in (*SERVICES, SIMULATORS)}.get(name)
    if spec is None:
        return None
    port = os.environ.get(f"{spec.env_prefix}_PORT", str(spec.default_port))
    return f"http://127.0.0.1:{port}/health/ready"


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else own_url()
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
