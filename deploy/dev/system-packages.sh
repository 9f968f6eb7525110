#!/usr/bin/env bash
# What `make test` needs beyond Python, from Debian's packages when missing: Chromium for
# the console's browser tests (fonts-noto-cjk draws its Korean pages) and npm, which
# brings the AsyncAPI JSON schema the contract tests validate against. With arguments, those
# commands only (each from the Debian package of its name): `make load` asks for siege.
set -euo pipefail
missing=()
if [ $# -gt 0 ]; then
  for command in "$@"; do command -v "$command" >/dev/null || missing+=("$command"); done
else
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
  command -v npm >/dev/null || missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "make needs: ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2
  exit 1
fi
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
