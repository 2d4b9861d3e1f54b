# syntax=docker/dockerfile:1
#
# proxyd container image: a static binary on distroless, as a non-root user.
#
# Needs BuildKit: the default builder since Docker Engine 23.0; on an older
# engine use DOCKER_BUILDKIT=1 docker build, or docker buildx build. The
# build stage runs on the builder's own platform (--platform=$BUILDPLATFORM,
# cross-compiling for TARGETOS/TARGETARCH) and caches modules and builds
# (RUN --mount=type=cache); the legacy builder fails on them with "failed
# to parse platform" or "the --mount option requires BuildKit".
#
#   docker build -t proxyd:dev \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse HEAD)" \
#     --build-arg DATE="$(git log -1 --format=%cI)" .
#   docker run --rm -p 127.0.0.1:8080:8080 proxyd:dev
#
# Listeners inside the image (docs/operations.md, "The container image"):
#   - proxy: 0.0.0.0:8080, set by ENV PROXYD_LISTEN below. The binary's own
#     default stays 127.0.0.1:8080; a sidecar can set PROXYD_LISTEN back to
#     127.0.0.1:8080 so that only its pod reaches the proxy.
#   - admin: the binary's default, 127.0.0.1:9090, reachable only from inside
#     the container. To expose it (Prometheus, httpGet probes), set BOTH
#     PROXYD_ADMIN_LISTEN=0.0.0.0:9090 and PROXYD_ADMIN_TOKEN: the token
#     guards /api/ (limit changes); /healthz, /readyz and /metrics stay open.
#     Set the admin address by environment variable, not by flag or file, so
#     that the HEALTHCHECK (which sees the environment only) finds it.

ARG GO_VERSION=1.26

# ---- build: a static, trimmed, stamped binary -----------------------------
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION="" COMMIT="" DATE=""
# Empty VERSION, COMMIT or DATE fall back to what the Go toolchain recorded
# ("proxyd version" prints "dev", "unknown").
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/proxyd ./cmd/proxyd

# ---- run: no shell, CA certificates and tzdata included, uid 65532 --------
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION="" COMMIT="" DATE=""
LABEL org.opencontainers.image.title="proxyd" \
      org.opencontainers.image.description="Priority-aware, rate-limiting HTTP forward proxy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${DATE}"
COPY --from=build /out/proxyd /usr/local/bin/proxyd
ENV PROXYD_LISTEN=0.0.0.0:8080
USER 65532:65532
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/proxyd", "health"]
ENTRYPOINT ["/usr/local/bin/proxyd"]
