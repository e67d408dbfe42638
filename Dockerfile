# syntax=docker/dockerfile:1
# marketlink: multi-stage build. The runtime image holds one static-ish binary, CA
# certificates and a non-root user; migrations are compiled into the binary.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package marketlink-cli \
 && install -D target/release/marketlink /out/marketlink

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/marketlink --create-home marketlink
COPY --from=build /out/marketlink /usr/local/bin/marketlink
USER 10001:10001
WORKDIR /var/lib/marketlink
# Listen on every interface inside the container; SQLite (the default) lives in the volume.
ENV MARKETLINK_SERVER__BIND=0.0.0.0:8080 \
    MARKETLINK_DATABASE__URL=sqlite:/var/lib/marketlink/marketlink.db \
    MARKETLINK_LOG__FORMAT=json
VOLUME ["/var/lib/marketlink"]
EXPOSE 8080
# SIGTERM: stop accepting, finish in-flight requests and the job in hand, then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/marketlink"]
CMD ["serve"]
