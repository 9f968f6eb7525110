#!/bin/sh
# The seed's load test: siege POSTs the seed's form body to /models through the gateway.
# (The seed's own run got 415 on every request: its services took JSON only; ours take forms.)
# The gateway wants a token: one for user NOCODE_DEMO_USER (default test) is signed with
# `nocode token` (needs JWT_PRIVATE_KEY and JWT_KEY_ID) unless NOCODE_TOKEN is given.
#
#   nocode-loadtest [CONCURRENCY] [DURATION]        default: 20 30S (siege -c / -t)
set -eu
gateway="${NOCODE_GATEWAY_URL:-http://gateway:8080}"
concurrency="${1:-20}"
duration="${2:-30S}"
user="${NOCODE_DEMO_USER:-test}"
token="${NOCODE_TOKEN:-$(nocode token --user "$user")}"
exec siege -c"$concurrency" -t"$duration" -v --log=/tmp/siege.log \
  --header="Authorization: Bearer $token" \
  "$gateway/models POST userId=$user&state=request&modelName=TestModel1"
