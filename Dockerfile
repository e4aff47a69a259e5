# The crease gateway image: the static binary (scoreboard page and demo matches
# embedded) on an empty base, as a non-root user. Multi-stage: needs only a container
# tool with access to a registry that has the golang image.
#
#   podman build --format docker -t crease .     # or: docker build -t crease .
#   podman run --rm -p 8080:8080 -p 8081:8081 crease demo
#
# (--format docker keeps HEALTHCHECK, which the OCI image format has no field for.)
# Without registry access, build the binary on the host instead:
# deploy/container/build.sh uses deploy/container/Dockerfile.prebuilt, whose final stage
# is the same as this one's (a test keeps the two equal).

ARG GO_VERSION=1.26
FROM docker.io/library/golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# rootfs/ is the whole image: the binary, a sticky world-writable /tmp (the gateway
# keeps one private Unix socket there, so a read-only root needs /tmp writable), and the
# license texts (the embedded match data is Cricsheet's, ODC-By: NOTICE says so).
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/rootfs/crease ./cmd/crease \
 && mkdir -p /out/rootfs/tmp /out/rootfs/usr/share/doc/crease \
 && chmod 1777 /out/rootfs/tmp \
 && cp LICENSE NOTICE /out/rootfs/usr/share/doc/crease/

# ---- final stage: keep identical to deploy/container/Dockerfile.prebuilt ----
FROM scratch
COPY --from=build /out/rootfs/ /
LABEL org.opencontainers.image.title="crease" \
      org.opencontainers.image.description="WebSocket fan-out gateway for live sports" \
      org.opencontainers.image.licenses="Apache-2.0"
# 65532 is the conventional "nonroot" id of distroless images; scratch has no
# /etc/passwd, so the id is numeric (Kubernetes' runAsNonRoot needs it numeric too).
USER 65532:65532
ENV CREASE_WS_ADDR=:8080 CREASE_HTTP_ADDR=:8081
# 8080: WebSocket (/ws). 8081: HTTP (snapshots, /metrics, /healthz, /readyz, the page).
EXPOSE 8080 8081
# No shell or curl here: the binary probes its own /healthz (CREASE_HTTP_ADDR).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/crease", "healthcheck"]
# SIGTERM drains (reconnect hints over --drain-window, then exit by --drain-grace);
# give the container drain window + grace + the shutdown waits (~8 s) to stop (docker stop -t 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/crease"]
CMD ["serve"]
