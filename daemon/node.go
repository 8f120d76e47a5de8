package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/nodeagent"
)

// runNode is the DaemonSet mode: watch this node's gateway pods and keep their netns converged
// until SIGTERM/SIGINT, then leave every gateway as it is.
func runNode(args []string) int {
	o, err := parseNodeFlags(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcnat-daemon: %v\n", err)
		return 2
	}
	defer klog.Flush()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serveNode(ctx, o); err != nil {
		klog.ErrorS(err, "vpcnat-daemon failed")
		return 1
	}
	return 0
}

func serveNode(ctx context.Context, o *nodeOptions) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the client configuration: %w", err)
	}
	cfg.UserAgent = "vpcnat-daemon/" + o.nodeName
	cfg.QPS, cfg.Burst = float32(o.apiQPS), o.apiBurst
	// Pods travel as protobuf: cheaper to decode than JSON, for the informer and patches alike.
	podCfg := rest.CopyConfig(cfg)
	podCfg.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(podCfg)
	if err != nil {
		return fmt.Errorf("creating the API client: %w", err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the metadata client: %w", err)
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(2)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vpcnat-daemon", Host: o.nodeName})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	agent, err := nodeagent.New(nodeagent.Config{
		NodeName: o.nodeName, GatewayNamespace: o.gatewayNamespace, StateDir: o.stateDir,
		Resync: o.resync, Workers: o.workers, SyncTimeout: o.syncTimeout,
		NodeNetns: o.nodeNetns, Master: o.master, Registerer: reg,
	}, client, meta, recorder)
	if err != nil {
		return err
	}
	if o.metricsAddr != "" {
		srv, err := serveMetrics(o.metricsAddr, reg, agent.Ready)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	klog.InfoS("Starting vpcnat-daemon", "node", o.nodeName, "gatewayNamespace", o.gatewayNamespace,
		"stateDir", o.stateDir, "resync", o.resync, "workers", o.workers, "nodeNetns", o.nodeNetns)
	return agent.Run(ctx)
}

// serveMetrics serves /metrics, /healthz and /readyz (200 once the caches have synced, 503 before) on
// addr. It listens before returning, so a bad address fails the start and the actual address
// (":0" in tests) is logged.
func serveMetrics(addr string, reg *prometheus.Registry, ready func() bool) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	synced := func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "caches not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
	// The same answer on both: the livenessProbe (/healthz) allows the first sync a minute and a
	// half; the readinessProbe (/readyz) keeps a rolling update from moving to the next node
	// before this daemon has synced.
	mux.HandleFunc("/healthz", synced)
	mux.HandleFunc("/readyz", synced)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Metrics server stopped")
		}
	}()
	klog.InfoS("Serving /metrics, /healthz and /readyz", "address", l.Addr().String())
	return srv, nil
}
