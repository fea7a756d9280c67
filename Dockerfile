# lcache-node and lcache-cli in a small image.
#
#   docker build -t lru_cache:latest .
#   docker run --rm -p 9000:9000 -p 8080:8080 lru_cache:latest
#
# Build stage: the same scripts/setup and CMake preset as README and CI, so the
# image cannot drift from what the tests build. Runtime stage: bookworm-slim
# plus exactly the Debian packages that own the shared libraries the two
# programs link (found with ldd + dpkg in the build stage), a non-root user.

FROM debian:bookworm AS build
WORKDIR /src
# Packages first: this layer is reused until scripts/setup changes.
COPY scripts/setup scripts/setup
RUN scripts/setup build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release >/dev/null \
 && cmake --build --preset release -j "$(nproc)" --target lcache-node lcache-cli
# The runtime packages: the owners of the libraries the programs load.
RUN ldd build/bin/lcache-node build/bin/lcache-cli | awk '$2 == "=>" && $3 ~ /^\// {print $3}' \
    | sort -u | while read -r lib; do dpkg -S "*/$(basename "$lib")"; done \
    | sed 's/: .*//; s/, /\n/g' | sed 's/:.*//' | sort -u > /runtime-packages \
 && cat /runtime-packages

FROM debian:bookworm-slim
COPY --from=build /runtime-packages /tmp/runtime-packages
RUN apt-get update -qq \
 && xargs -a /tmp/runtime-packages apt-get install -y -qq --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin lcache
COPY --from=build /src/build/bin/lcache-node /src/build/bin/lcache-cli /usr/local/bin/
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# 9000: the peer protocol (gRPC) and grpc.health.v1: values, loads, Set and
# Remove, plaintext and unauthenticated, for the cluster network only.
# 8080: the HTTP admin API, on the container's loopback by default (nothing
# outside needs it); to publish it (probes, Prometheus), pass
# -http 0.0.0.0:8080 -http-token-file FILE: everything but /healthz and
# /readyz then needs the token (docs/SECURITY.md, k8s/cache.yaml).
EXPOSE 9000
ENTRYPOINT ["lcache-node"]
# -addr is also the node's name on the ring: with peers or etcd, pass the
# address the other nodes reach it at (see k8s/cache.yaml).
CMD ["-addr", "0.0.0.0:9000", "-http", "127.0.0.1:8080"]
