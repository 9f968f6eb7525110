#!/bin/sh
# Creates the Secrets nocode-secrets and nocode-postgres (see secrets.example.yaml) with
# generated passwords and a fresh Ed25519 key pair. Needs openssl, python3 and kubectl.
#
#   k8s/secrets/create-secrets.sh [--print] [-n NAMESPACE]
#
# Without --print it applies them, but only if they do not exist yet: PostgreSQL takes
# its passwords at first start only, so regenerating them later would lock the services
# out. Environment overrides: CHAT_WEBHOOK_URL (the real Swing chat webhook; default the
# simulators), GATEWAY_ADMIN_USERNAME (default admin), DB_HOST (default postgres).
set -eu

print=false
namespace=nocode
while [ $# -gt 0 ]; do
  case "$1" in
    --print) print=true ;;
    -n) namespace="$2"; shift ;;
    *) echo "usage: $0 [--print] [-n NAMESPACE]" >&2; exit 2 ;;
  esac
  shift
done

if [ "$print" = false ] && kubectl -n "$namespace" get secret nocode-secrets nocode-postgres >/dev/null 2>&1; then
  echo "nocode-secrets and nocode-postgres exist in $namespace: left as they are" >&2
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
password() { openssl rand -hex 24; }

openssl genpkey -algorithm ed25519 -out "$work/jwt.pem" 2>/dev/null
openssl pkey -in "$work/jwt.pem" -pubout -out "$work/jwt.pub.pem"
# core's own key: it signs only the platform's own calls (role service).
openssl genpkey -algorithm ed25519 -out "$work/service.pem" 2>/dev/null
openssl pkey -in "$work/service.pem" -pubout -out "$work/service.pub.pem"
python3 -c 'import json, sys; print(json.dumps({"k1": open(sys.argv[1]).read(), "service": open(sys.argv[2]).read()}))' \
  "$work/jwt.pub.pem" "$work/service.pub.pem" > "$work/public-keys.json"

db_host="${DB_HOST:-postgres}"
pg_args="--from-literal=POSTGRES_PASSWORD=$(password)"
url_args=""
for service in gateway model notice core target mypage_cqrs; do
  upper="$(echo "$service" | tr '[:lower:]' '[:upper:]')"
  pw="$(password)"
  pg_args="$pg_args --from-literal=${upper}_DB_PASSWORD=$pw"
  url_args="$url_args --from-literal=${upper}_DATABASE_URL=postgresql+asyncpg://$service:$pw@$db_host:5432/$service"
done

render() {
  # Hex passwords and fixed names: safe to split on spaces.
  # shellcheck disable=SC2086
  kubectl create secret generic nocode-postgres -n "$namespace" $pg_args \
    --dry-run=client -o yaml
  echo "---"
  # shellcheck disable=SC2086
  kubectl create secret generic nocode-secrets -n "$namespace" $url_args \
    --from-file=JWT_PUBLIC_KEYS="$work/public-keys.json" \
    --from-file=JWT_PRIVATE_KEY="$work/jwt.pem" \
    --from-file=SERVICE_JWT_PRIVATE_KEY="$work/service.pem" \
    --from-literal=JWT_KEY_ID=k1 \
    --from-literal=GATEWAY_ADMIN_USERNAME="${GATEWAY_ADMIN_USERNAME:-admin}" \
    --from-literal=GATEWAY_ADMIN_PASSWORD="$(password)" \
    --from-literal=CHAT_WEBHOOK_URL="${CHAT_WEBHOOK_URL:-http://simulators:8090/chat/webhook}" \
    --dry-run=client -o yaml
}

if [ "$print" = true ]; then
  render
else
  render | kubectl apply -f -
  echo "created; the first admin's password: kubectl -n $namespace get secret nocode-secrets -o jsonpath='{.data.GATEWAY_ADMIN_PASSWORD}' | base64 -d" >&2
fi
