# p2pd as a container: a minimal non-root runtime image (glibc and libgcc only: no shell, no
# package manager), p2pd as PID 1, configured from P2P_* environment variables.
#
#   docker build -t p2pd .                     with network access: builds in the official Rust
#                                              image, runs in distroless cc (nonroot)
#   scripts/docker.sh build                    offline (no registry): the runtime base made from
#                                              Debian's packages, binaries built on the host,
#                                              through the `offline` target below
#
# The classic builder builds the stages before the target in order, so the offline target comes
# before the build stage, which it never needs.

ARG RUNTIME=gcr.io/distroless/cc-debian12:nonroot
ARG RUST=rust:1-bookworm

# Everything about the runtime image except where its binaries come from.
FROM ${RUNTIME} AS runtime
# Container defaults: every interface, metrics reachable through a published port, data in the
# volume (the control socket too, so `docker exec NAME p2pctl status` finds it), logs as text
# on stderr (P2P_LOG__FORMAT=json for JSON lines).
ENV P2P_LISTEN_ADDRS=/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1 \
    P2P_METRICS__ADDR=0.0.0.0:9100 \
    P2P_DATA_DIR=/data \
    XDG_RUNTIME_DIR=/data/run \
    P2P_LOG__FORMAT=text \
    RUST_LOG=info
EXPOSE 4001/tcp 4001/udp 9100/tcp
# /data owned by the runtime user, made without a shell (a new named volume copies it).
COPY --chown=65532:65532 docker/data /data
VOLUME ["/data"]
USER 65532:65532
WORKDIR /data
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/bin/p2pd", "health"]
# p2pd handles SIGTERM and SIGINT itself as PID 1: it saves the routing table and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/p2pd"]

# Offline: binaries built on the host (scripts/docker.sh build puts them in target/docker/bin).
FROM runtime AS offline
COPY target/docker/bin/p2pd target/docker/bin/p2pctl /usr/bin/

# Online: built in the official Rust image.
FROM ${RUST} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p p2pd -p p2pctl --bins

FROM runtime
COPY --from=build /src/target/release/p2pd /src/target/release/p2pctl /usr/bin/
