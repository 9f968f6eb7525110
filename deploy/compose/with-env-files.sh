#!/bin/sh
# Entrypoint of the nocode containers in docker-compose.yml: exports the settings the
# `jwt-keys` job wrote (/run/nocode/*/jwt.env: whichever key volumes this container
# mounts), then runs the command, e.g. `nocode serve model`.
set -eu
set -a
for file in /run/nocode/*/jwt.env; do
  if [ -r "$file" ]; then
    . "$file"
  fi
done
set +a
exec "$@"
