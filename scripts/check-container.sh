#!/usr/bin/env bash
# The container image and the compose network, on a real Docker daemon (a private one this
# script starts when none answers): the image builds through the offline path, runs as a
# non-root uid, has no shell, and its size is printed; a container becomes healthy, answers
# `p2pctl status` through `docker exec` and /metrics through its published port (read-only root
# filesystem), stops on `docker stop` with exit code 0 leaving its routing table in the volume,
# and keeps its PeerId when started again; the compose network comes up healthy with the three
# nodes connected and a gossip message from one reaching the others. Traffic stays between the
# test's containers and the host. Every wait is a condition with a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER_HOST=$(scripts/docker.sh daemon)
export DOCKER_HOST
command -v docker-compose >/dev/null 2>&1 ||
  apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
scripts/docker.sh build

fail() {
  echo "container check FAILED: $*" >&2
  exit 1
}
# until_true SECONDS WHAT COMMAND...: runs COMMAND until it succeeds, or fails the check.
until_true() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what (not within ${secs}s)"
    sleep 0.5
  done
}

NAME=p2pd-check-$$
PROJECT=p2pdcheck$$
cleanup() {
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker volume rm "$NAME-data" >/dev/null 2>&1 || true
  docker-compose -p "$PROJECT" down -v >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The image.
user=$(docker image inspect p2pd:latest --format '{{.Config.User}}')
[ "$user" = "65532:65532" ] || fail "runs as '$user', not 65532:65532"
for sh in /bin/sh /bin/bash /usr/bin/sh /busybox; do
  if docker run --rm --entrypoint "$sh" p2pd:latest -c true >/dev/null 2>&1; then
    fail "the image has a shell ($sh)"
  fi
done
size=$(docker image inspect p2pd:latest --format '{{.Size}}')
echo "image p2pd:latest: $((size / 1024 / 1024)) MiB, user $user, no shell"

# One container: healthy, p2pctl through docker exec, metrics through the published port.
docker run -d --name "$NAME" --read-only -v "$NAME-data:/data" -p 127.0.0.1::9100 p2pd:latest >/dev/null
healthy() { [ "$(docker inspect "$1" --format '{{.State.Health.Status}}')" = healthy ]; }
until_true 90 "the container became healthy" healthy "$NAME"
status=$(docker exec "$NAME" p2pctl --json status)
id=$(echo "$status" | sed -n 's/.*"peer_id":"\([^"]*\)".*/\1/p')
[ -n "$id" ] || fail "p2pctl status through docker exec: $status"
port=$(docker port "$NAME" 9100/tcp | head -n 1 | sed 's/.*://')
target/debug/http_get "http://127.0.0.1:$port/metrics" | grep -q '^libp2p_connections_active' ||
  fail "/metrics through the published port $port"
echo "container: healthy, PeerId $id, p2pctl via docker exec, /metrics on 127.0.0.1:$port"

# docker stop: SIGTERM to p2pd as PID 1, exit 0, the routing table saved in the volume.
started=$SECONDS
docker stop -t 30 "$NAME" >/dev/null
code=$(docker inspect "$NAME" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || fail "exit code $code after docker stop"
docker cp "$NAME:/data/routing_table.json" - >/dev/null || fail "no routing_table.json in the volume"
echo "docker stop: exit 0 in $((SECONDS - started)) s, routing table in the volume"
docker start "$NAME" >/dev/null
until_true 30 "the restarted container answered" docker exec "$NAME" p2pctl status
again=$(docker exec "$NAME" p2pctl --json status | sed -n 's/.*"peer_id":"\([^"]*\)".*/\1/p')
[ "$again" = "$id" ] || fail "PeerId changed across a restart: $id -> $again"
echo "restart: same PeerId"
docker rm -f "$NAME" >/dev/null

# The compose network, on free host ports.
scripts/docker.sh compose-init
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export P2P_PORT METRICS_PORT
P2P_PORT=$(free_port)
METRICS_PORT=$(free_port)
compose() { docker-compose -p "$PROJECT" "$@"; }
compose up -d >/dev/null 2>&1 || { compose up -d; fail "docker-compose up"; }
container() { compose ps -q "$1"; }
for s in bootstrap node1 node2; do
  until_true 120 "$s became healthy" healthy "$(container "$s")"
done
peer_of() { docker exec "$(container "$1")" p2pctl --json status | sed -n 's/.*"peer_id":"\([^"]*\)".*/\1/p'; }
declare -A ids
for s in bootstrap node1 node2; do ids[$s]=$(peer_of "$s"); done
knows_all() {
  local peers
  peers=$(docker exec "$(container "$1")" p2pctl --json peers)
  for o in bootstrap node1 node2; do
    [ "$o" = "$1" ] || grep -q "${ids[$o]}" <<<"$peers" || return 1
  done
}
for s in bootstrap node1 node2; do
  until_true 60 "$s connected to the two others" knows_all "$s"
done
echo "compose: 3 nodes healthy and connected to each other"

# Gossip: subscribers on two nodes, a message from the third reaches both.
out=$(mktemp -d)
for s in node1 node2; do
  docker exec "$(container "$s")" p2pctl --json pubsub sub check >"$out/$s" 2>&1 &
done
delivered() {
  docker exec "$(container bootstrap)" p2pctl pubsub pub check "hello from bootstrap" >/dev/null 2>&1 || true
  grep -q "$(printf 'hello from bootstrap' | base64)" "$out/node1" &&
    grep -q "$(printf 'hello from bootstrap' | base64)" "$out/node2"
}
until_true 60 "a message published on bootstrap reached node1 and node2" delivered
kill %1 %2 2>/dev/null || true
echo "compose: gossip from bootstrap reached node1 and node2"
echo "CONTAINER CHECK PASSED"
