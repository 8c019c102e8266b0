# bitaxe-exporter, built in a Rust image and run from a small Debian one.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY assets ./assets
COPY tests ./tests
COPY benches ./benches
# The context has no .git: pass the commit for bitaxe_exporter_build_info with
# `docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) .` (else "unknown").
ARG GIT_COMMIT=unknown
ENV BITAXE_GIT_COMMIT=${GIT_COMMIT}
# A stripped binary: about 7 MB instead of about 49 MB with line tables.
RUN CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --bin bitaxe-exporter

FROM debian:bookworm-slim
# The ledger lives in /etc/bitaxe-exporter/data: a relative logging.database_path (the
# default ./data/metrics.db) resolves against the config file's folder, and the compose
# file mounts the ledger volume there.
RUN useradd --system --uid 10001 --home-dir /etc/bitaxe-exporter/data bitaxe \
    && mkdir -p /etc/bitaxe-exporter/data \
    && chown bitaxe /etc/bitaxe-exporter/data
COPY --from=build /src/target/release/bitaxe-exporter /usr/local/bin/bitaxe-exporter
# No config is baked in: mount yours at /etc/bitaxe-exporter/config.yaml (the compose file
# does). Without one the container exits at once, saying which file is missing.
USER bitaxe
WORKDIR /etc/bitaxe-exporter/data
EXPOSE 9842
# Healthy while /healthz answers "ok" (bash's /dev/tcp: the slim image has no curl).
HEALTHCHECK --interval=30s --timeout=5s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9842 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && grep -q '^ok' <&3"]
# The config by environment, not --config: commands that read none (discover, simulate)
# run too (`docker run --rm --network host IMAGE discover`).
ENV BITAXE_EXPORTER_CONFIG=/etc/bitaxe-exporter/config.yaml
ENTRYPOINT ["bitaxe-exporter"]
CMD ["serve"]
