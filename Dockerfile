# syntax=docker/dockerfile:1
# One build for every binary, one slim runtime image with a target per kind of service.
#
#   planner  → recipe.json: the dependency graph only, so editing our code keeps the next layer
#   builder  → cargo chef cook (dependencies, cached until Cargo.lock changes), then our crates
#   runtime  → debian-slim, a non-root user, every binary of the workspace
#   gateway  → the gateway, its port and health check
#   worker   → any worker (the compose service names its binary as the command), port 9100
#   tools    → the load test and the all-in-one demo
#
# Nothing here lists the services: a new worker of the workspace is built, shipped and run by
# the `worker` target as it is.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# Every binary of the workspace but the tooling's.
RUN cargo build --release --locked --workspace --bins --exclude xtask \
    && mkdir /out \
    && find target/release -maxdepth 1 -type f -executable -exec cp {} /out/ \;

FROM debian:bookworm-slim AS runtime
# curl for the health checks; ca-certificates for an HTTPS SMS provider.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home seckill \
    && install -d -o seckill /data/sms
COPY --from=builder /out/ /usr/local/bin/
USER seckill
WORKDIR /data
ENV LOG_FORMAT=json

FROM runtime AS gateway
ENV GATEWAY_LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=2s --retries=12 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
CMD ["gateway"]

# `docker run … seckill-worker order-worker` (or sms-worker, stats-worker, points-worker, …).
FROM runtime AS worker
ENV HTTP_ADDR=0.0.0.0:9100
EXPOSE 9100
HEALTHCHECK --interval=5s --timeout=2s --retries=12 CMD curl -fsS http://127.0.0.1:9100/healthz || exit 1

# The load generator, and the all-in-one embedded demo (`docker run --rm -p 8080:8080 … seckill --listen 0.0.0.0:8080`).
FROM runtime AS tools
CMD ["loadtest", "--help"]
