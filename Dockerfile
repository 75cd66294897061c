# keel in a container: a release build in a Rust image, run from a slim Debian with CA
# certificates (for HTTPS Git remotes, forges and webhooks).
#
#   docker build --build-arg KEEL_BUILD="$(git rev-parse --short=12 HEAD)" -t keel .
#   docker run -d --name keel \
#     -v keel-state:/var/lib/keel \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v "$PWD/examples-repo:/repo:ro" \
#     keel agent --source /repo --path apps
#
# The state directory (SQLite database, Git checkouts, rendered configs) is a volume so that
# it survives upgrades; keel adopts the containers it finds by label after a restart.

FROM rust:1-bookworm AS build
WORKDIR /src
ARG KEEL_BUILD
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo ./.cargo
COPY src ./src
# Cargo reads every target Cargo.toml declares, the benchmarks too, even to build one binary.
COPY benches ./benches
COPY schemas ./schemas
COPY examples-repo ./examples-repo
RUN cargo build --release --locked --bin keel

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/keel /usr/local/bin/keel
VOLUME ["/var/lib/keel"]
WORKDIR /var/lib/keel
ENTRYPOINT ["keel"]
CMD ["agent", "--db", "/var/lib/keel/keel.db", "--source", "/repo"]
