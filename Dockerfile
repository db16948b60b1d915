# syntax=docker/dockerfile:1
# infergate: multi-stage image. The build stage installs the -dev packages with
# scripts/install-deps.sh and builds the release preset; the final stage holds only the two
# binaries and the runtime libraries they link (checked with ldd/dpkg -S on Debian bookworm).
#
#   docker build -t infergate:dev .
#   docker run --rm -p 8080:8080 -p 9090:9090 -v $PWD/examples/docker-compose/infergate.yaml:/etc/infergate/infergate.yaml:ro infergate:dev

FROM debian:bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends sudo ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release -DINFERGATE_BUILD_TESTS=OFF -DINFERGATE_BUILD_BENCH=OFF \
    && cmake --build --preset release --target infergate infergate-sim infergate-k8s-watch \
    && mkdir -p /out \
    && cp build/release/proxy/infergate build/release/sim/infergate-sim \
          build/release/discovery/infergate-k8s-watch /out/ \
    && strip --strip-debug /out/*

FROM debian:bookworm-slim AS runtime
# Boost (Asio/Beast) is header-only: no libboost at run time.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      libstdc++6 libfmt9 libyaml-cpp0.7 libsimdjson14 libprometheus-cpp-core1.0 \
      libssl3 libnghttp2-14 libxxhash0 libtcmalloc-minimal4 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 infergate \
    && useradd --system --uid 10001 --gid infergate --no-create-home --shell /usr/sbin/nologin infergate
COPY --from=build /out/ /usr/local/bin/
COPY examples/docker-compose/infergate.yaml /etc/infergate/infergate.yaml
USER 10001:10001
# 8080: OpenAI API; 9090: admin (/healthz, /readyz, /metrics). infergate-sim listens on 8000.
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/infergate"]
CMD ["--config", "/etc/infergate/infergate.yaml", "--log-format", "json"]
