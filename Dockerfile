# syntax=docker/dockerfile:1
# castplane's two images from one build:
#   docker build --target control-plane -t castplane-control .   # castplane-control + castctl
#   docker build --target agent -t castplane-agent .             # castplane-agent + the streaming servers
# Both run on Debian 12, the platform the agent's plugins are measured on.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# protox compiles the protos in build.rs, so no protoc is needed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p castplane-control -p castplane-agent -p castctl \
    && install -D -m 0755 target/release/castplane-control /out/castplane-control \
    && install -D -m 0755 target/release/castplane-agent /out/castplane-agent \
    && install -D -m 0755 target/release/castctl /out/castctl

FROM debian:12-slim AS control-plane
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 castplane \
    && useradd --system --uid 10001 --gid castplane --home-dir /var/lib/castplane --no-create-home castplane \
    && install -d -m 0700 -o castplane -g castplane /var/lib/castplane
COPY --from=build /out/castplane-control /out/castctl /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/castplane
# API (TLS), agent listener (mTLS), plaintext health for probes, /metrics.
EXPOSE 7400 7401 7402 9400
ENTRYPOINT ["/usr/local/bin/castplane-control"]
CMD ["--data-dir", "/var/lib/castplane"]

FROM debian:12-slim AS agent
# The streaming servers the plugins drive (the packages create the icecast2, liquidsoap and
# www-data users the agent starts them as); no service is started at build time.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       ca-certificates icecast2 ffmpeg liquidsoap nginx libnginx-mod-rtmp \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/castplane-agent /usr/local/bin/
# Root, so it can start each server as its own user; see k8s/base/agent.yaml for what it keeps.
USER 0:0
EXPOSE 9401
ENTRYPOINT ["/usr/local/bin/castplane-agent"]
CMD ["run", "--data-dir", "/var/lib/castplane-agent"]
