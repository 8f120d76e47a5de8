package admission

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"
)

// Serve serves h at Path over HTTPS on addr (":0" picks a port) until ctx ends, with the
// certificate certs has loaded at each handshake. It returns the address bound.
func Serve(ctx context.Context, addr string, certs *Certs, h http.Handler) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("webhook listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		// The API server gives up after the configuration's timeoutSeconds (5) anyway.
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		TLSConfig:    &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
	}
	go func() {
		if err := srv.ServeTLS(l, "", ""); err != nil && err != http.ErrServerClosed {
			klog.FromContext(ctx).Error(err, "Webhook server stopped")
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	klog.FromContext(ctx).Info("Serving the admission webhook", "addr", l.Addr().String(), "path", Path)
	return l.Addr(), nil
}
