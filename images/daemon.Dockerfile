# The node daemon image, for people who build with Docker (the tests use hack/images.sh, which
# needs no container engine and makes the same layout):
#   docker build -f images/daemon.Dockerfile -t vpcnat.local/vpcnat-daemon:dev .
# It holds vpcnat-daemon; the vpcnat CNI plugin in /opt/vpcnat/bin, two binaries the DaemonSet's
# install-cni init container copies onto the node side by side: vpcnat (the dispatcher the
# runtime executes) and vpcnat-gateway (the full plugin it hands calls to); and iptables with the
# nf_tables backend, which the daemon runs (iptables-save, iptables-restore) inside each
# gateway's namespace.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static: the plugin runs on the node, whatever its libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/vpcnat-daemon ./daemon \
 && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/vpcnat ./plugins/vpcnat \
 && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/vpcnat-gateway ./plugins/vpcnat-gateway

FROM debian:bookworm-slim
# iptables 1.8.9; the nft backend is the one the kernel tests exercise (Debian's default too,
# set explicitly so a changed default cannot switch it silently).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && update-alternatives --set iptables /usr/sbin/iptables-nft \
 && update-alternatives --set ip6tables /usr/sbin/ip6tables-nft \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/vpcnat-daemon /usr/local/bin/vpcnat-daemon
COPY --from=build /out/vpcnat /out/vpcnat-gateway /opt/vpcnat/bin/
ENTRYPOINT ["/usr/local/bin/vpcnat-daemon"]
