# syntax=docker/dockerfile:1
# ollama-emu: an emulated Ollama server (same API, no model weights, no GPU)
# for the `emulated` compose profile and for trying the balancer anywhere.
#
#   docker build -f deploy/docker/ollama-emu.Dockerfile -t ollama-lb/ollama-emu .
#   docker run --rm -p 11434:11434 ollama-lb/ollama-emu --model llama3.2:1b
#
# The build context is the repository root (see syncd.Dockerfile).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --release -p ollama-emu \
 && install -D -m 0755 target/release/ollama-emu /out/ollama-emu

FROM debian:bookworm-slim
# curl is only for health checks.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ollama-emu /usr/local/bin/ollama-emu
EXPOSE 11434
USER 65534:65534
# Inside a container the emulator must listen on all interfaces.
ENV OLLAMA_EMU_LISTEN=0.0.0.0:11434
ENTRYPOINT ["ollama-emu"]
