# syntax=docker/dockerfile:1
# The ollama-lb wasm filter, built once and packaged two ways:
#
#   (default, last stage) an OCI image holding only /plugin.wasm, the layout
#   Istio's WasmPlugin / TrafficExtension pulls with `url: oci://...`:
#     docker build -f deploy/docker/filter.Dockerfile -t REGISTRY/ollama-lb-filter:TAG .
#     docker push REGISTRY/ollama-lb-filter:TAG
#
#   (--target compose-export) a throwaway image whose only job is to copy
#   filter.wasm into a volume; docker-compose.yaml runs it before Envoy.
#
# The build context is the repository root (the filter is a workspace member).

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked -p filter --target wasm32-wasip1 --profile wasm \
 && install -D -m 0644 target/wasm32-wasip1/wasm/filter.wasm /out/filter.wasm

FROM debian:bookworm-slim AS compose-export
COPY --from=build /out/filter.wasm /filter.wasm
# The volume is mounted at /out; Envoy mounts the same volume at /etc/envoy.
ENTRYPOINT ["cp", "/filter.wasm", "/out/filter.wasm"]

FROM scratch AS plugin
COPY --from=build /out/filter.wasm /plugin.wasm
