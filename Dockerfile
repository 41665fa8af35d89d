# The passeur container image: the binary and nothing else.
#   docker build -t passeur .
#   docker run --rm passeur --help
# Build stage: the workspace in release mode (RocksDB's C++ needs libclang).
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin passeur \
 && install -D -m 0755 target/release/passeur /out/passeur

# Run stage: glibc, libstdc++, CA certificates and a non-root user (65532),
# no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/passeur /usr/local/bin/passeur
USER 65532:65532
# State (the manifests) lives on a volume; /status and /metrics on 9187.
VOLUME ["/var/lib/passeur"]
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/passeur"]
CMD ["run", "--config", "/etc/passeur/passeur.toml"]
