# bitaxe-exporter, built in a Rust image and run from a small Debian one.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
COPY benches ./benches
RUN cargo build --release --locked --bin bitaxe-exporter

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data bitaxe \
    && mkdir -p /data /etc/bitaxe-exporter \
    && chown bitaxe /data
COPY --from=build /src/target/release/bitaxe-exporter /usr/local/bin/bitaxe-exporter
COPY config.yaml.example /etc/bitaxe-exporter/config.yaml
USER bitaxe
# A relative logging.database_path (the default ./data/metrics.db) lands in the /data volume.
WORKDIR /data
EXPOSE 9842
HEALTHCHECK --interval=30s --timeout=5s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9842"]
ENTRYPOINT ["bitaxe-exporter", "--config", "/etc/bitaxe-exporter/config.yaml"]
CMD ["serve"]
