# syntax=docker/dockerfile:1
# syncd: polls the Ollama instances and publishes the model map to the filter.
#
#   docker build -f deploy/docker/syncd.Dockerfile -t ollama-lb/syncd .
#
# The build context is the repository root: the crate is part of a Cargo
# workspace, and cargo needs every member's manifest to resolve it.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is
# copied out because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --release -p syncd \
 && install -D -m 0755 target/release/syncd /out/syncd

FROM debian:bookworm-slim
# curl is only for health checks (`curl -f http://127.0.0.1:11435/readyz`).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/syncd /usr/local/bin/syncd
# Inside a container syncd must listen on all interfaces for Envoy to reach
# it; its own default (127.0.0.1:11435) suits a host install.
ENV SYNCD_LISTEN=0.0.0.0:11435 \
    RUST_LOG=info
EXPOSE 11435
# nobody: syncd needs no privileges and writes no files.
USER 65534:65534
ENTRYPOINT ["syncd"]
CMD ["run"]
