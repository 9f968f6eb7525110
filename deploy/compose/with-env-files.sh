#!/bin/sh
# Entrypoint of the nocode containers in docker-compose.yml: exports the settings the
# `jwt-keys` and `kafka-credentials` jobs wrote (/run/nocode/*/jwt.env, kafka.env:
# whichever secret volumes this container mounts), then runs the command, e.g.
# `nocode serve model`.
set -eu
set -a
for file in /run/nocode/*/jwt.env /run/nocode/*/kafka.env; do
  if [ -r "$file" ]; then
    . "$file"
  fi
done
set +a
exec "$@"
