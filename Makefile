# vpcnat: `make demo` (no cluster needed) and `make test` (the whole suite), as root on a fresh
# Debian/Ubuntu machine. Both install what is missing first (hack/install-deps.sh).
SHELL := /bin/bash
GO    ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN   := $(CURDIR)/bin
# Built tools and test binaries are cached by version outside the checkout.
CACHE ?= /var/cache/vpcnat
export PATH := $(dir $(GO)):$(PATH)

.PHONY: all deps build demo test test-unit bench vet clean

all: build

deps:
	@hack/install-deps.sh

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/vpcnat-daemon ./daemon
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/vpcnat ./plugins/vpcnat
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/vpcnat-gateway ./plugins/vpcnat-gateway
	$(GO) build -o $(BIN)/vpcnat-controller ./controller

demo: deps build
	$(GO) build -o $(BIN)/vpcnat-demo ./test/demo
	$(BIN)/vpcnat-demo --daemon $(BIN)/vpcnat-daemon --spec examples/seed.yaml \
		--cni-path $(BIN):$$(VPCNAT_CACHE=$(CACHE) hack/build-cni-plugins.sh)

vet:
	$(GO) vet ./...

# The whole suite. Kernel tests need root (CI runs as root); -p 1 keeps namespace-heavy packages
# from competing for the two cores and the xtables lock.
test: deps build vet
	$(GO) test -count=1 -p 1 -timeout 30m ./...
	hack/fuzz.sh 5s

test-unit:
	$(GO) test -count=1 ./pkg/...

bench: deps build
	$(GO) build -o $(BIN)/vpcnat-bench ./test/bench
	$(BIN)/vpcnat-bench

clean:
	rm -rf $(BIN)

# --- generated code and CRDs (controller-gen, pinned and cached by hack/controller-gen.sh) ----
.PHONY: generate crds
CONTROLLER_GEN = $$(VPCNAT_CACHE=$(CACHE) hack/controller-gen.sh)

# Deepcopy functions of pkg/apis (zz_generated.deepcopy.go).
generate:
	$(CONTROLLER_GEN) object paths=./pkg/apis/...

# deploy/crds from the Go types and their kubebuilder markers; test/controller fails on drift.
crds: generate
	$(CONTROLLER_GEN) crd paths=./pkg/apis/... output:crd:dir=deploy/crds
	cp deploy/crds/*.yaml charts/vpcnat/crds/

# --- container images and the one-node test cluster (hack/images.sh, hack/cluster/) ---------
.PHONY: images cluster-setup e2e

# Image tarballs (docker-archive) in bin/images, built without a container engine; unchanged
# images are not rewritten. Load one into a node with `ctr -n k8s.io images import`.
images: deps
	@hack/images.sh

# Installs containerd/runc if missing, builds the cluster's binaries (cached by version in
# $(CACHE)) and the images, writes PKI and configs. Needs root; without it the e2e tests skip.
cluster-setup: deps
	@if [ "$$(id -u)" -eq 0 ]; then VPCNAT_CACHE=$(CACHE) hack/cluster/setup.sh; \
	else echo "cluster-setup: not root; skipped (test/e2e skips too)"; fi

# The end-to-end suite on a throwaway one-node cluster, alone and verbose (timings): the cluster
# itself (TestCluster), then vpcnat installed from deploy/ and checked with packets (TestVpcNat).
e2e: cluster-setup
	$(GO) test -count=1 -v -timeout 30m ./test/e2e/...

# The end-to-end suite's run with the ConfigMap's dataplane set to nftables (test/e2e
# TestVpcNatNFTables: the seed's traffic, every edit, a daemon restart, a live switch to iptables
# and back under an open connection), on a throwaway one-node cluster of its own (make test runs
# it too, about 30 s).
.PHONY: e2e-nftables
e2e-nftables: cluster-setup
	flock /tmp/vpcnat-cluster.lock $(GO) test -count=1 -v -timeout 30m -run TestVpcNatNFTables ./test/e2e/

# `make test` runs test/e2e with the rest; building the cluster before go test starts keeps a
# cold Kubernetes build (~20 min) out of the test binary's timeout.
test: cluster-setup

# --- Helm chart (charts/vpcnat) -----------------------------------------------------------------
.PHONY: helm chart
# helm, pinned, built from the Go module proxy and cached (hack/build-helm.sh); built before go
# test starts, so that a cold build stays out of the test binary's timeout.
helm:
	@VPCNAT_CACHE=$(CACHE) hack/build-helm.sh >/dev/null

# helm lint and helm template of the chart, checked against deploy/ object by object, and the
# dashboard and alert rules of deploy/monitoring against the metrics the programs register.
chart: helm
	$(GO) test -count=1 -v ./test/chart/ ./test/monitoring/

test: helm

# --- vpcnat-daemon's node mode ----------------------------------------------------------------
.PHONY: bench-daemon
# Annotation patch to live rule (1 and 10 000 rules) and the daemon's memory with 50 gateway
# pods, against a real kube-apiserver (test/bench/daemon builds the daemon itself).
bench-daemon: deps
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/vpcnat-bench-daemon ./test/bench/daemon
	$(BIN)/vpcnat-bench-daemon

# --- controller benchmark (test/bench/controller): create -> desired and edit -> desired latency,
# and the controller's memory with 1 000 gateways, on a real API server and controller-manager.
.PHONY: bench-controller
bench-controller: deps
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/vpcnat-bench-controller ./test/bench/controller
	$(BIN)/vpcnat-bench-controller

# --- the two NAT backends side by side (test/bench/dataplane): first converge, one-rule change,
# in-sync resync and kernel memory at 10 000 rules, iptables and nftables in the same run.
.PHONY: bench-dataplane
bench-dataplane: deps
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/vpcnat-bench-dataplane ./test/bench/dataplane
	$(BIN)/vpcnat-bench-dataplane

# --- every benchmark at a small size: each builds, runs to its end and prints its table (make
# test runs the same test through `go test ./...`, so no benchmark rots unnoticed).
.PHONY: bench-smoke
bench-smoke: deps
	$(GO) test -count=1 -v -run TestBenchSmoke ./test/bench/

# --- reliability soak: long runs that print figures; not part of `make test` ---------
.PHONY: soak fuzz
# Every fuzz target for FUZZTIME each (make test runs them for 5 s each).
FUZZTIME ?= 10m
fuzz:
	hack/fuzz.sh $(FUZZTIME)

# The churn soak (20 gateways, 10 minutes of rule churn through the API), 500 kill -9 trials
# inside converges per NAT backend (make test runs 100 with iptables, 40 with nftables), every
# fuzz target for FUZZTIME, then the replicated
# gateway's failover soak (soak-failover, below). Each prints its figures.
SOAKTIME ?= 10m
soak: deps build
	VPCNAT_SOAK=$(SOAKTIME) $(GO) test -count=1 -p 1 -v -timeout 40m -run TestChurn ./test/soak/
	VPCNAT_SOAK=1 $(GO) test -count=1 -p 1 -v -timeout 30m -run TestCrashConsistency ./test/reliability/
	FUZZ_LOGDIR=/tmp/vpcnat-fuzz-soak hack/fuzz.sh $(FUZZTIME)
	$(MAKE) soak-failover

# --- the multi-node cluster (hack/cluster/start-multi.sh, node.sh; test/multinode) -------------
.PHONY: multinode baseline-failover e2e-failover
# Three real nodes on this machine: Ready, cross-node pod traffic, power off / partition / power
# on, nothing left after stop (make test runs it too; under the cluster lock, like e2e).
multinode: cluster-setup
	flock /tmp/vpcnat-cluster.lock $(GO) test -count=1 -v -run TestMultiNodeCluster ./test/multinode/

# The one-replica node-failure baseline (docs/reliability.md): the seed on a 3-node cluster, its
# gateway's node powered off, time until traffic through the DNAT flows again, with the shortest
# and the default tolerations. About 8 minutes; not part of `make test`.
baseline-failover: cluster-setup
	VPCNAT_BASELINE=1 flock /tmp/vpcnat-cluster.lock $(GO) test -count=1 -v -timeout 30m -run TestBaselineNodeFailure ./test/e2e/

# The replicated gateway's failover (docs/ha.md): the seed with replicas: 2 on a 3-node cluster,
# UDP probes every 10 ms through the DNAT and the SNAT and established TCP flows through the
# DNAT, the FIP (both ways) and the SNAT while the active pod is killed, the daemon on its node
# restarted, its external NIC cut, its node powered off and on. `make test` runs it too; this
# target runs it alone. The TCP flows are checked with mid-stream conntrack pickup off on the
# replicas, so that only replicated conntrack state carries them; VPCNAT_HA_TCP_FLOWS=pickup
# leaves the kernel's pickup on, =report only logs broken flows.
e2e-failover: cluster-setup
	flock /tmp/vpcnat-cluster.lock $(GO) test -count=1 -v -timeout 30m -run 'TestReplicatedFailover$$' ./test/e2e/

# The same failures FAILOVER_TRIALS times each (pod deleted, external NIC cut, node powered off,
# in turn) on one cluster: min / median / max of the UDP loss window per kind, the TCP flows that
# survived each trial, no EIP answered by two MACs after the detection window. About 25 minutes
# for 20 trials per kind (most of a power-off trial waits for the status); not in `make test`.
# FAILOVER_HOG=N runs N busy processes on the host during the trials (CPU starvation, as on a
# busy node; e.g. FAILOVER_HOG=4 on 2 cores), killed at the end; the report gives the load average.
FAILOVER_TRIALS ?= 20
FAILOVER_HOG ?= 0
.PHONY: soak-failover
soak-failover: cluster-setup
	VPCNAT_FAILOVER_SOAK=$(FAILOVER_TRIALS) VPCNAT_FAILOVER_HOG=$(FAILOVER_HOG) flock /tmp/vpcnat-cluster.lock $(GO) test -count=1 -v -timeout 180m -run TestReplicatedFailoverSoak ./test/e2e/
