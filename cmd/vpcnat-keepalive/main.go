// Command vpcnat-keepalive is the failover agent of a replicated gateway (spec.replicas ≥ 2),
// the gateway pod's process in place of vpcnat-pause. It runs in the pod's own network
// namespace, needs CAP_NET_RAW (packet sockets: heartbeats, ARP probes and gratuitous ARPs) and
// CAP_NET_ADMIN (the NICs' ARP flag) there and nothing else, and elects one active replica from
// heartbeats on the data path (docs/ha.md). It also replicates the active replica's conntrack
// table to the standbys over the pod network (eth0), so established flows survive a takeover
// (pkg/ctsync; CAP_NET_ADMIN covers ctnetlink in the pod's netns).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/ctsync"
	"github.com/vpcnat/vpcnat/pkg/ha"
)

func main() {
	klog.InitFlags(nil)
	gateway := flag.String("gateway", os.Getenv("VPCNAT_GATEWAY"), "the VpcNatGateway's name (env VPCNAT_GATEWAY)")
	replica := flag.String("replica", os.Getenv("POD_NAME"), "this replica's name, unique among the gateway's replicas (env POD_NAME)")
	priority := flag.Uint("priority", 100, "election priority among standbys, 0-255 (higher first)")
	minRX := flag.Int("min-rx", 0, "bfd.minRX: expected heartbeat interval of a peer, ms (0: 100)")
	minTX := flag.Int("min-tx", 0, "bfd.minTX: heartbeat interval, ms (0: 100)")
	mult := flag.Int("multiplier", 0, "bfd.multiplier: intervals without a heartbeat that make a peer dead (0: 3)")
	exclude := flag.String("exclude", "eth0", "comma list of NICs that are not the gateway's (the primary CNI's)")
	metricsAddr := flag.String("metrics-address", "", "serve Prometheus metrics on this address (empty: off)")
	replicaMACs := flag.Bool("replica-macs", false, "send nothing from a NIC until the daemon gave it this replica's own MAC (first byte 06)")
	ct := ctsync.Config{}
	ctOn := flag.Bool("conntrack-sync", true, "replicate the active replica's conntrack table to the standbys, so established flows survive a takeover")
	flag.StringVar(&ct.Interface, "conntrack-sync-interface", "eth0", "the NIC whose address the replicas stream conntrack over (the primary CNI's: the one address replicas do not share)")
	port := flag.Uint("conntrack-sync-port", 9540, "TCP port the active replica serves its conntrack table on, on the sync interface's address")
	flag.DurationVar(&ct.Resync, "conntrack-resync", time.Minute, "the active replica sends a full conntrack dump this often (at least 1s)")
	flag.BoolVar(&ct.Liberal, "conntrack-liberal", true, "mark TCP entries committed at takeover BE_LIBERAL (window tracking learns their windows from the next packets)")
	flag.Parse()
	if *port == 0 || *port > 65535 {
		klog.ErrorS(fmt.Errorf("-conntrack-sync-port %d: must be 1-65535", *port), "vpcnat-keepalive")
		os.Exit(1)
	}
	ct.Port = uint16(*port)
	var ctCfg *ctsync.Config
	if *ctOn {
		ct.Gateway, ct.Replica = *gateway, *replica
		ctCfg = &ct
	}
	if err := run(*gateway, *replica, *priority, *minRX, *minTX, *mult, *exclude, *metricsAddr, *replicaMACs, ctCfg); err != nil {
		klog.ErrorS(err, "vpcnat-keepalive")
		os.Exit(1)
	}
}

func run(gateway, replica string, priority uint, minRX, minTX, mult int, exclude, metricsAddr string, replicaMACs bool, ct *ctsync.Config) error {
	if priority > 255 {
		return fmt.Errorf("-priority %d: must be 0-255", priority)
	}
	timing, err := ha.TimingFromBFD(int32(minRX), int32(minTX), int32(mult))
	if err != nil {
		return err
	}
	var ex []string
	for _, s := range strings.Split(exclude, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ex = append(ex, s)
		}
	}
	cfg := ha.Config{Gateway: gateway, Replica: replica, Priority: uint8(priority), Timing: timing, Exclude: ex, ReplicaMACs: replicaMACs}
	if ct != nil {
		r, err := ctsync.New(*ct)
		if err != nil {
			return err
		}
		cfg.Conntrack = r
	}
	agent, err := ha.NewAgent(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if metricsAddr != "" {
		srv := &http.Server{Addr: metricsAddr, Handler: promhttp.HandlerFor(prometheus.Gatherers{ha.Registry, ctsync.Registry}, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "Serving metrics", "address", metricsAddr)
			}
		}()
		defer srv.Close()
	}
	return agent.Run(ctx)
}
