# The controller image, for people who build with Docker (the tests use hack/images.sh):
#   docker build -f images/controller.Dockerfile -t vpcnat.local/vpcnat-controller:dev .
# One static binary; it talks only to the API server, with the service account's CA.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/vpcnat-controller ./controller

FROM scratch
COPY --from=build /out/vpcnat-controller /usr/local/bin/vpcnat-controller
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vpcnat-controller"]
