// Command vpcnat-controller turns VpcNatGateway, Vpc and Subnet objects (kubeovn.io/v1) and the
// ConfigMap kube-system/ovn-vpc-nat-gw-config into gateway Deployments, the desired annotation
// on each gateway pod, and status and Events. One per cluster is active (a Lease elects it).
//
// It only wires: flags, clients, metrics and health endpoints, leader election. The reconcile
// loop is pkg/controller.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/admission"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

type flags struct {
	kubeconfig      string
	qps             float64
	burst           int
	opts            controller.Options
	metricsAddr     string
	profiling       bool
	leaderElect     bool
	le              controller.LeaderElection
	shutdownTimeout time.Duration
	webhookAddr     string
	webhookCerts    admission.CertOptions
}

func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("vpcnat-controller", flag.ContinueOnError)
	klog.InitFlags(fs)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: the in-cluster service account")
	fs.Float64Var(&f.qps, "kube-api-qps", 50, "API requests per second (sustained)")
	fs.IntVar(&f.burst, "kube-api-burst", 100, "API requests in a burst")
	fs.StringVar(&f.opts.GatewayNamespace, "gateway-namespace", plan.GatewayNamespace, "namespace of the gateway Deployments (the plugin's and daemon's gatewayNamespaces must include it)")
	fs.StringVar(&f.opts.ExternalNetwork, "external-network", controller.DefaultExternalNetwork, "external network attachment named in the pods' k8s.v1.cni.cncf.io/networks annotation")
	fs.IntVar(&f.opts.Workers, "workers", 4, "gateways synced in parallel")
	fs.DurationVar(&f.opts.Resync, "resync", 10*time.Minute, "periodic re-check of every gateway (0: none)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", ":8080", "address of /metrics, /healthz (liveness) and /readyz (readiness); empty: none")
	fs.BoolVar(&f.profiling, "profiling", false, "also serve Go's /debug/pprof/ on the metrics address")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "run only while holding the Lease (one active controller per cluster)")
	fs.StringVar(&f.le.Namespace, "leader-elect-namespace", plan.GatewayNamespace, "namespace of the Lease")
	fs.StringVar(&f.le.Name, "leader-elect-name", "vpcnat-controller", "name of the Lease")
	fs.DurationVar(&f.le.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a Lease lasts without renewal")
	fs.DurationVar(&f.le.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader tries to renew before giving up")
	fs.DurationVar(&f.le.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often candidates try the Lease")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to wait for the workers on SIGTERM")
	fs.StringVar(&f.webhookAddr, "webhook-addr", "", "address of the validating admission webhook (HTTPS, path /validate) on every replica; empty: none (docs/admission.md)")
	fs.StringVar(&f.webhookCerts.Namespace, "webhook-namespace", plan.GatewayNamespace, "namespace of the webhook's Service and certificate Secret")
	fs.StringVar(&f.webhookCerts.Service, "webhook-service", "vpcnat-webhook", "the webhook's Service, named in its serving certificate")
	fs.StringVar(&f.webhookCerts.Secret, "webhook-secret", "vpcnat-webhook-cert", "Secret the leader keeps the webhook's CA and serving certificate in")
	fs.StringVar(&f.webhookCerts.WebhookConfig, "webhook-config", "vpcnat", "ValidatingWebhookConfiguration the leader patches the CA bundle into")
	fs.DurationVar(&f.webhookCerts.Validity, "webhook-cert-validity", admission.DefaultValidity, "validity of the webhook's CA and serving certificate; renewed at two thirds")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	// The pod name (the hostname in a pod) tells people which replica leads; the suffix keeps two
	// processes on one host apart.
	f.le.Identity = host + "_" + string(uuid.NewUUID())
	return f, nil
}

func main() {
	f, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-controller:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f); err != nil {
		klog.ErrorS(err, "vpcnat-controller stopped")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, f *flags) error {
	cfg, err := restConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = float32(f.qps), f.burst
	cfg.UserAgent = "vpcnat-controller"
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	ovn, err := kubeovn.NewForConfig(cfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f.opts.Registerer = reg
	c, err := controller.New(kube, ovn, f.opts)
	if err != nil {
		return err
	}
	ready := controller.NewReadiness(c, f.leaderElect)
	if f.leaderElect {
		f.le.Healthz = leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
		f.le.Readiness = ready
	}
	if f.metricsAddr != "" {
		if err := serveMetrics(ctx, f.metricsAddr, reg, f.le.Healthz, ready, f.profiling); err != nil {
			return err
		}
	}
	lead := c.Run
	if f.webhookAddr != "" {
		if lead, err = serveWebhook(ctx, f, kube, c, reg); err != nil {
			return err
		}
	}
	if !f.leaderElect {
		return lead(ctx)
	}
	return controller.RunAsLeader(ctx, kube, f.le, lead)
}

// serveWebhook serves the admission webhook on every replica, from the controller's caches
// (started now, not at leadership), and returns what the leader runs: the controller and the
// certificate's rotation. Every replica watches the Secret and serves each certificate the
// leader writes.
func serveWebhook(ctx context.Context, f *flags, kube kubernetes.Interface, c *controller.Controller, reg prometheus.Registerer) (func(context.Context) error, error) {
	certs, err := admission.NewCerts(kube, f.webhookCerts)
	if err != nil {
		return nil, err
	}
	c.StartCaches(ctx)
	if _, err := admission.Serve(ctx, f.webhookAddr, certs, admission.NewWebhook(c.Claims(), c.ClaimsSynced, reg)); err != nil {
		return nil, err
	}
	go certs.WatchSecret(ctx)
	return func(ctx context.Context) error {
		// The first look (now) issues the certificate on a fresh cluster. Renewal is due only at
		// two thirds of a year; a configuration re-created from deploy/ gets its CA bundle back
		// from the watch at once, and a look (two GETs) every minute also repairs a Secret
		// someone deleted or broke.
		go certs.RunRotation(ctx, time.Minute)
		go certs.WatchWebhookConfig(ctx)
		return c.Run(ctx)
	}, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (or pass --kubeconfig): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// serveMetrics serves /metrics, /healthz and /readyz until ctx ends. The address actually bound
// (":0" picks a port) is logged, for tests and benchmarks.
//
// /healthz is liveness: 200 while the process serves, unless it leads on a Lease it has not
// renewed for 20 s past its expiry (a stuck leader, which a restart cures). It does not wait for
// the informer caches, unlike the daemon's /healthz: a controller started before the CRDs are
// served would otherwise be restarted in a loop. /readyz is readiness (controller.Readiness): the
// leader once its caches have synced, a standby once it has read the Lease; both also fail the
// stuck-leader check, as kube-scheduler's /readyz does.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, le *leaderelection.HealthzAdaptor, ready http.Handler, profiling bool) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if le != nil {
			if err := le.Check(r); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if le != nil {
			if err := le.Check(r); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		ready.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	klog.InfoS("Serving metrics", "addr", l.Addr().String())
	return nil
}
