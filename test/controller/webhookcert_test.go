package controller

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/admission"
)

// clock is a settable clock for the certificate's renewal decisions.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func secretData(t *testing.T) *corev1.Secret {
	t.Helper()
	s, err := admin.kube.CoreV1().Secrets(ns).Get(context.Background(), webhookSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func caBundleOf(t *testing.T) []byte {
	t.Helper()
	cfg, err := admin.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), webhookConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Webhooks[0].ClientConfig.CABundle
}

func certsIn(t *testing.T, bundle []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := bundle; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// verifies says whether bundle verifies the Secret's serving certificate for host at now.
func verifies(t *testing.T, bundle, certPEM []byte, host string, now time.Time) bool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("CA bundle holds no certificate")
	}
	leaf := certsIn(t, certPEM)[0]
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, CurrentTime: now})
	return err == nil
}

// handshake is the serving certificate a TLS client trusting bundle gets from addr, nil when
// the handshake fails.
func handshake(t *testing.T, addr string, bundle []byte) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "vpcnat-webhook.kube-system.svc"})
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestWebhookCertificateRotation: the leader (as the controller's ServiceAccount) issues a CA and
// serving certificate for the Service into the Secret and writes the CA bundle into deploy/'s
// ValidatingWebhookConfiguration; it leaves them be until two thirds of the validity have
// passed, then renews them, keeping the previous CA in the bundle for one renewal; a serving
// replica hands out the renewed certificate without a restart once it loads the Secret, and one
// that watches the Secret (as every replica does) at once. The clock is the test's: validity is
// a year, as deployed.
func TestWebhookCertificateRotation(t *testing.T) {
	removeWebhook(t)
	t.Cleanup(func() { removeWebhook(t) })
	ctx := context.Background()
	if err := env.Install(ctx, repoRoot, "deploy/controller/15-webhook.yaml"); err != nil {
		t.Fatal(err)
	}
	if len(caBundleOf(t)) != 0 {
		t.Fatal("deploy/ ships a CA bundle")
	}
	c, err := newClients(controllerConfig)
	if err != nil {
		t.Fatal(err)
	}
	// The first certificate was issued 300 days ago: the real clock (the TLS client's) is inside
	// the first two certificates' validity.
	clk := &clock{now: time.Now().Add(-300 * 24 * time.Hour)}
	leader, err := admission.NewCerts(c.kube, certOptions(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	replica, err := admission.NewCerts(c.kube, certOptions(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	if err := replica.Load(ctx); err != nil { // nothing to load yet: not an error
		t.Fatal(err)
	}
	srvCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	addr, err := admission.Serve(srvCtx, "127.0.0.1:0", replica, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}

	// Another replica watches the Secret, as vpcnat-controller's replicas do.
	watcher, err := admission.NewCerts(c.kube, certOptions(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	go watcher.WatchSecret(srvCtx)
	watched, err := admission.Serve(srvCtx, "127.0.0.1:0", watcher, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	servesSoon := func(what string, bundle, certPEM []byte) {
		t.Helper()
		want := certsIn(t, certPEM)[0].Raw
		eventually(t, waitLong, "the watching replica serves "+what, func() error {
			if got := handshake(t, watched.String(), bundle); got == nil || !bytes.Equal(got.Raw, want) {
				return errorf("not yet")
			}
			return nil
		})
	}

	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	first := secretData(t)
	servesSoon("the first certificate", first.Data[admission.KeyCABundle], first.Data[admission.KeyCert])
	if first.Type != corev1.SecretTypeTLS || !bytes.Equal(caBundleOf(t), first.Data[admission.KeyCABundle]) {
		t.Fatalf("Secret type %s; configuration's CA bundle equal to the Secret's: %v", first.Type, bytes.Equal(caBundleOf(t), first.Data[admission.KeyCABundle]))
	}
	for _, host := range []string{"vpcnat-webhook.kube-system.svc", "vpcnat-webhook.kube-system", "127.0.0.1"} {
		if !verifies(t, first.Data[admission.KeyCABundle], first.Data[admission.KeyCert], host, clk.now) {
			t.Errorf("the certificate is not valid for %s", host)
		}
	}
	if got := certsIn(t, first.Data[admission.KeyCert])[0]; got.NotAfter.Sub(got.NotBefore) < 365*24*time.Hour {
		t.Errorf("valid %v, want a year", got.NotAfter.Sub(got.NotBefore))
	}
	if handshake(t, addr.String(), first.Data[admission.KeyCABundle]) != nil {
		t.Fatal("the replica served a certificate before loading one")
	}
	if err := replica.Load(ctx); err != nil {
		t.Fatal(err)
	}
	served := handshake(t, addr.String(), first.Data[admission.KeyCABundle])
	if served == nil || !bytes.Equal(served.Raw, certsIn(t, first.Data[admission.KeyCert])[0].Raw) {
		t.Fatal("the replica does not serve the Secret's certificate")
	}

	// 200 days on: not due (renewal at 243 days); nothing is written.
	clk.now = clk.now.Add(200 * 24 * time.Hour)
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if s := secretData(t); s.ResourceVersion != first.ResourceVersion {
		t.Fatal("the Secret was rewritten before its renewal was due")
	}

	// 250 days after issue: renewed, and the bundle trusts the old CA too.
	clk.now = clk.now.Add(50 * 24 * time.Hour)
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	second := secretData(t)
	bundle := second.Data[admission.KeyCABundle]
	if bytes.Equal(second.Data[admission.KeyCert], first.Data[admission.KeyCert]) || !bytes.Equal(caBundleOf(t), bundle) {
		t.Fatal("not renewed, or the configuration's CA bundle is not the new one")
	}
	if n := len(certsIn(t, bundle)); n != 2 {
		t.Fatalf("the bundle holds %d CAs, want the new and the previous one", n)
	}
	if !verifies(t, bundle, first.Data[admission.KeyCert], "vpcnat-webhook.kube-system.svc", clk.now) ||
		!verifies(t, bundle, second.Data[admission.KeyCert], "vpcnat-webhook.kube-system.svc", clk.now) {
		t.Fatal("the bundle does not verify both the old and the new certificate")
	}
	// The replica serves the old one until it loads, then the new one, without a restart.
	if got := handshake(t, addr.String(), bundle); got == nil || !bytes.Equal(got.Raw, served.Raw) {
		t.Fatal("the replica's certificate changed before it loaded the Secret")
	}
	if err := replica.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := handshake(t, addr.String(), bundle); got == nil || !bytes.Equal(got.Raw, certsIn(t, second.Data[admission.KeyCert])[0].Raw) {
		t.Fatal("the replica does not serve the renewed certificate")
	}
	servesSoon("the renewed certificate", bundle, second.Data[admission.KeyCert])

	// The next renewal drops the first CA (expired by then) and keeps the second.
	clk.now = clk.now.Add(250 * 24 * time.Hour)
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	third := certsIn(t, secretData(t).Data[admission.KeyCABundle])
	firstCA, secondCA := certsIn(t, first.Data[admission.KeyCABundle])[0], certsIn(t, bundle)[0]
	if len(third) != 2 || !bytes.Equal(third[1].Raw, secondCA.Raw) || bytes.Equal(third[0].Raw, firstCA.Raw) {
		t.Fatalf("bundle after the second renewal: %d CAs, want the new one and the second", len(third))
	}

	// A Secret someone broke is replaced at the next look.
	broken := secretData(t)
	broken.Data[admission.KeyKey] = []byte("garbage")
	if _, err := admin.kube.CoreV1().Secrets(ns).Update(ctx, broken, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if s := secretData(t); !verifies(t, s.Data[admission.KeyCABundle], s.Data[admission.KeyCert], "vpcnat-webhook.kube-system.svc", clk.now) ||
		bytes.Equal(s.Data[admission.KeyKey], []byte("garbage")) {
		t.Fatal("the broken Secret was not replaced")
	}
}

// TestWebhookConfigurationReappliedGetsBundle: the leader watches its webhook configuration, so
// one deleted and re-applied from deploy/ (which ships no CA bundle: with failurePolicy Ignore
// the API server would admit everything meanwhile) gets the CA bundle back without waiting for
// the periodic look, which this test never runs.
func TestWebhookConfigurationReappliedGetsBundle(t *testing.T) {
	removeWebhook(t)
	t.Cleanup(func() { removeWebhook(t) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := env.Install(ctx, repoRoot, "deploy/controller/15-webhook.yaml"); err != nil {
		t.Fatal(err)
	}
	c, err := newClients(controllerConfig)
	if err != nil {
		t.Fatal(err)
	}
	leader, err := admission.NewCerts(c.kube, certOptions(time.Now))
	if err != nil {
		t.Fatal(err)
	}
	go leader.WatchWebhookConfig(ctx) // as the controller's ServiceAccount: RBAC must allow the watch
	hasBundle := func() error {
		cfg, err := admin.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, webhookConfig, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, w := range cfg.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return errorf("webhook %s has no CA bundle", w.Name)
			}
		}
		return nil
	}
	eventually(t, waitLong, "the first CA bundle", hasBundle)
	first := caBundleOf(t)

	if err := admin.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, webhookConfig, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.Install(ctx, repoRoot, "deploy/controller/15-webhook.yaml"); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitLong, "the CA bundle back in the re-applied configuration", hasBundle)
	if !bytes.Equal(caBundleOf(t), first) {
		t.Error("the re-applied configuration got another CA bundle than the Secret's")
	}
}
