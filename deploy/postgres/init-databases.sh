#!/bin/sh
# One database per service, each owned by the service's own role, which can connect to
# its database only (no service reads another's tables). The official postgres image
# runs this once, on an empty data directory (/docker-entrypoint-initdb.d/).
# Each role's password comes from <SERVICE>_DB_PASSWORD (GATEWAY_DB_PASSWORD, ...).
# Used by docker-compose.yml and by k8s (the postgres StatefulSet, via deploy/kustomization.yaml).
set -eu

for service in gateway model notice core target mypage_cqrs; do
  var="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  password="$(printenv "$var" || true)"
  if [ -z "$password" ]; then
    echo "init-databases: $var is not set" >&2
    exit 1
  fi
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v service="$service" -v password="$password" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
  echo "init-databases: database and role $service created"
done
