#!/bin/sh
# docker-compose's one-shot `kafka-users` job (apache/kafka image), as the broker's admin
# over its internal listener: a SCRAM-SHA-512 credential for each service user (passwords
# from the kafka-credentials job), then the ACLs in $ACLS, one "user type name operations"
# a line (type: topic, group or cluster). Both steps are idempotent: re-run on every `up`.
set -eu
BIN=${KAFKA_BIN:-/opt/kafka/bin}
SECRETS=${KAFKA_SECRETS:-/run/nocode/kafka-admin}
ADMIN="--bootstrap-server ${ADMIN_BOOTSTRAP:-kafka:9094} --command-config $SECRETS/admin.properties"

while read -r user password; do
  [ -n "$user" ] || continue
  # shellcheck disable=SC2086
  $BIN/kafka-configs.sh $ADMIN --alter --entity-type users --entity-name "$user" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]" >/dev/null
  echo "kafka-users: $user can sign in (SCRAM-SHA-512)"
done <"$SECRETS/scram-users"

echo "$ACLS" | while read -r user type name operations; do
  [ -n "$user" ] || continue
  case "$type" in
    topic) resource="--topic $name" ;;
    group) resource="--group $name" ;;
    cluster) resource="--cluster" ;;
    *) echo "kafka-users: unknown resource type '$type'" >&2; exit 1 ;;
  esac
  flags=""
  for operation in $(echo "$operations" | tr ',' ' '); do
    flags="$flags --operation $operation"
  done
  # shellcheck disable=SC2086
  $BIN/kafka-acls.sh $ADMIN --add --allow-principal "User:$user" $flags $resource >/dev/null
  echo "kafka-users: $user may $operations $type $name"
done
