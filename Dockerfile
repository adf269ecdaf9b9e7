# coldpress as a container image, for CI jobs and the sharded audits of
# docs/scale-out.md:
#
#   docker build -t coldpress .            (or: buildah build -t coldpress .)
#   docker run --rm coldpress --version
#
# Two stages: the toolchain builds a release binary; the image people run holds
# that binary, CA certificates (TLS is rustls with the system roots) and a
# non-root user on debian-slim (about 75 MB before the binary). Not distroless: CI runners
# (GitLab's `script:`, the Kubernetes Job in docs/scale-out.md) need a shell.

FROM docker.io/library/rust:1.89-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so an edit to coldpress reuses their layer.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src src
COPY catalog catalog
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && install -D target/release/coldpress /out/coldpress

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o 10001 -g 10001 /home/coldpress
COPY --from=build /out/coldpress /usr/local/bin/coldpress
# A numeric user needs no passwd entry (nor useradd in the base); HOME is where
# coldpress keeps its cache (~/.cache/coldpress) and finds ~/.docker/config.json.
ENV HOME=/home/coldpress
USER 10001:10001
WORKDIR /home/coldpress
ENTRYPOINT ["/usr/local/bin/coldpress"]
