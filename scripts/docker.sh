#!/usr/bin/env bash
# Containers without a registry (see README, "Run in a container"):
#   scripts/docker.sh base          the runtime base image p2pd-runtime:bookworm, made from
#                                   Debian's libc6 and libgcc-s1 packages (no shell, no apt)
#   scripts/docker.sh build         p2pd:latest through the Dockerfile's `offline` target, with
#                                   binaries built here (makes the base first if missing)
#   scripts/docker.sh compose-init  a fixed identity for the compose file's bootstrap node and
#                                   the .env naming its PeerId (docker-compose.yml)
#   scripts/docker.sh daemon        starts a private dockerd (for tests) when none answers;
#                                   prints the DOCKER_HOST to use
# Uses the docker daemon DOCKER_HOST names (or the default one).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=p2pd-runtime:bookworm

# In a subshell, so the EXIT trap that removes its work directory is its own: a RETURN trap
# set in a function stays set after it and fired again, with `work` gone, when `build` (which
# calls this) returned — failing the build whenever the base had to be made first.
base() (
  if docker image inspect "$BASE" >/dev/null 2>&1; then
    exit 0
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && { apt-get download libc6 libgcc-s1 >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download libc6 libgcc-s1 >/dev/null; }; })
  mkdir -p "$work/root"
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
  rm -rf "$work/root/usr/share/doc" "$work/root/usr/share/lintian" "$work/root/usr/share/man" \
    "$work/root/usr/share/locale"
  mkdir -p "$work/root/etc" "$work/root/tmp"
  chmod 1777 "$work/root/tmp"
  # The same users as distroless: root, and nonroot (65532) that p2pd runs as.
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$work/root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$work/root/etc/group"
  tar -C "$work/root" --owner=0 --group=0 -c . | docker import - "$BASE" >/dev/null
  echo "made $BASE from Debian's libc6 and libgcc-s1"
)

build() {
  base
  cargo build --release --locked -p p2pd -p p2pctl --bins
  mkdir -p target/docker/bin
  cp target/release/p2pd target/release/p2pctl target/docker/bin/
  DOCKER_BUILDKIT=0 docker build -q --target offline --build-arg RUNTIME="$BASE" -t p2pd:latest . >/dev/null
  local size
  size=$(docker image inspect p2pd:latest --format '{{.Size}}')
  echo "built p2pd:latest ($((size / 1024 / 1024)) MiB)"
}

compose_init() {
  local dir=docker/compose
  mkdir -p "$dir"
  if [ ! -f "$dir/bootstrap.key" ] || ! grep -q '^BOOTSTRAP_PEER_ID=12D3' .env 2>/dev/null; then
    local bin=target/release/p2pd
    [ -x "$bin" ] || cargo build --release --locked -p p2pd
    rm -f "$dir/bootstrap.key"
    local id
    id=$("$bin" keygen --out "$dir/bootstrap.key")
    printf 'BOOTSTRAP_PEER_ID=%s\nPUBLIC_IP=%s\n' "$id" "${PUBLIC_IP:-127.0.0.1}" >.env
  fi
  # Readable by the container's user only.
  chown 65532:65532 "$dir/bootstrap.key"
  chmod 0600 "$dir/bootstrap.key"
  echo "bootstrap identity $dir/bootstrap.key; $(grep BOOTSTRAP_PEER_ID .env) (in .env)"
}

daemon() {
  if docker info >/dev/null 2>&1; then
    echo "${DOCKER_HOST:-unix:///var/run/docker.sock}"
    return
  fi
  local dir=/var/lib/p2pd-docker
  mkdir -p "$dir" /run/p2pd-docker
  local sock=unix:///run/p2pd-docker/docker.sock
  if ! DOCKER_HOST=$sock docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends docker.io >/dev/null
    nohup dockerd --data-root "$dir/root" --exec-root /run/p2pd-docker/exec \
      --pidfile /run/p2pd-docker/dockerd.pid -H "$sock" >"$dir/dockerd.log" 2>&1 &
    local deadline=$((SECONDS + 60))
    until DOCKER_HOST=$sock docker info >/dev/null 2>&1; do
      if [ $SECONDS -gt $deadline ]; then
        tail -n 20 "$dir/dockerd.log" >&2
        echo "dockerd did not start" >&2
        exit 1
      fi
      sleep 0.5
    done
  fi
  echo "$sock"
}

case "${1:-}" in
  base) base ;;
  build) build ;;
  compose-init) compose_init ;;
  daemon) daemon ;;
  *) echo "usage: scripts/docker.sh base|build|compose-init|daemon" >&2; exit 2 ;;
esac
