# The gateway pod image (the ConfigMap's `image`), for people who build with Docker (the tests
# use hack/images.sh):
#   docker build -f images/gateway.Dockerfile -t vpcnat.local/vpcnat-gateway:dev .
# The pod does nothing itself: the CNI plugin and the daemon configure its network namespace
# from the host. So: one static do-nothing binary, unprivileged; and for replicated gateways
# (spec.replicas ≥ 2) the failover agent, which the Deployment runs instead (docs/ha.md).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY cmd/vpcnat-pause ./cmd/vpcnat-pause
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/vpcnat-pause ./cmd/vpcnat-pause
COPY cmd/vpcnat-keepalive ./cmd/vpcnat-keepalive
COPY pkg ./pkg
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/vpcnat-keepalive ./cmd/vpcnat-keepalive

FROM scratch
COPY --from=build /out/vpcnat-pause /usr/local/bin/vpcnat-pause
COPY --from=build /out/vpcnat-keepalive /usr/local/bin/vpcnat-keepalive
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/vpcnat-pause"]
