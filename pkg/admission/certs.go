package admission

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// Keys of the certificate Secret (those of kubernetes.io/tls, plus the CA bundle).
const (
	KeyCABundle = "ca.crt"
	KeyCert     = corev1.TLSCertKey
	KeyKey      = corev1.TLSPrivateKeyKey
)

// DefaultValidity of a CA and serving certificate; they are renewed at two thirds of it.
const DefaultValidity = 365 * 24 * time.Hour

// CertOptions say where the certificate lives and whom it names.
type CertOptions struct {
	// Namespace of the Secret and the Service.
	Namespace string
	// Secret holds the CA bundle and the serving certificate and key.
	Secret string
	// Service is the webhook's Service: the certificate names <service>.<namespace>.svc (and the
	// shorter forms).
	Service string
	// ExtraHosts are more DNS names or IP addresses for the certificate (a test's 127.0.0.1).
	ExtraHosts []string
	// WebhookConfig is the ValidatingWebhookConfiguration whose webhooks get the CA bundle.
	WebhookConfig string
	// Validity of a new CA and certificate (DefaultValidity when 0).
	Validity time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Certs keeps the serving certificate: Rotate (the leader) writes it, Load (every replica) reads
// it, GetCertificate serves the one last loaded.
type Certs struct {
	kube    kubernetes.Interface
	opts    CertOptions
	current atomic.Pointer[tls.Certificate]
}

// NewCerts checks opts and returns a Certs with no certificate loaded.
func NewCerts(kube kubernetes.Interface, opts CertOptions) (*Certs, error) {
	for _, f := range []struct{ name, value string }{
		{"namespace", opts.Namespace}, {"secret", opts.Secret}, {"service", opts.Service}, {"webhook configuration", opts.WebhookConfig},
	} {
		if f.value == "" {
			return nil, fmt.Errorf("webhook certificate: the %s is empty", f.name)
		}
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultValidity
	}
	if opts.Validity < time.Hour {
		return nil, fmt.Errorf("webhook certificate: validity %v is under an hour", opts.Validity)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Certs{kube: kube, opts: opts}, nil
}

// GetCertificate is tls.Config.GetCertificate: the certificate last loaded, so that a renewal
// takes effect without a restart.
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.current.Load(); cert != nil {
		return cert, nil
	}
	return nil, errors.New("no webhook serving certificate loaded yet")
}

// Load reads the Secret and serves its certificate from now on. A Secret not written yet is not
// an error: the previous certificate (or none) stays.
func (c *Certs) Load(ctx context.Context) error {
	s, err := c.kube.CoreV1().Secrets(c.opts.Namespace).Get(ctx, c.opts.Secret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Secret %s/%s: %w", c.opts.Namespace, c.opts.Secret, err)
	}
	return c.use(ctx, s)
}

// use serves the Secret's certificate from now on.
func (c *Certs) use(ctx context.Context, s *corev1.Secret) error {
	cert, err := tls.X509KeyPair(s.Data[KeyCert], s.Data[KeyKey])
	if err != nil {
		return fmt.Errorf("Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	if old := c.current.Load(); old == nil || !bytes.Equal(old.Certificate[0], cert.Certificate[0]) {
		klog.FromContext(ctx).Info("Loaded the webhook serving certificate", "secret", s.Namespace+"/"+s.Name,
			"notAfter", cert.Leaf.NotAfter)
	}
	c.current.Store(&cert)
	return nil
}

// Rotate (the leader only) makes the Secret hold a valid certificate for the Service that is not
// past two thirds of its validity, and the webhook configuration the CA bundle that verifies
// it. A renewal first adds the new CA to the configuration's bundle (beside the old one, which
// still verifies the replicas that have not reloaded), then writes the Secret.
func (c *Certs) Rotate(ctx context.Context) error {
	secrets := c.kube.CoreV1().Secrets(c.opts.Namespace)
	cur, err := secrets.Get(ctx, c.opts.Secret, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading Secret %s/%s: %w", c.opts.Namespace, c.opts.Secret, err)
	}
	if apierrors.IsNotFound(err) {
		cur = nil
	}
	now := c.opts.Now()
	if cur != nil && c.fresh(cur.Data, now) {
		return c.patchCABundle(ctx, cur.Data[KeyCABundle])
	}
	data, err := c.issue(now)
	if err != nil {
		return err
	}
	reason := "none"
	if cur != nil {
		reason = "renewal due or certificate unusable"
		// Keep trusting the CA of the certificate still being served.
		if old := validCAs(cur.Data[KeyCABundle], now); len(old) > 0 {
			data[KeyCABundle] = append(data[KeyCABundle], old...)
		}
	}
	if err := c.patchCABundle(ctx, data[KeyCABundle]); err != nil {
		return err
	}
	if cur == nil {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: c.opts.Secret, Namespace: c.opts.Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "vpcnat-controller"}}, Type: corev1.SecretTypeTLS, Data: data}
		if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Secret %s/%s: %w", c.opts.Namespace, c.opts.Secret, err)
		}
	} else {
		upd := cur.DeepCopy()
		upd.Data = data
		if _, err := secrets.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating Secret %s/%s: %w", c.opts.Namespace, c.opts.Secret, err)
		}
	}
	klog.FromContext(ctx).Info("Issued the webhook serving certificate", "secret", c.opts.Namespace+"/"+c.opts.Secret,
		"previous", reason, "validity", c.opts.Validity)
	return c.Load(ctx)
}

// fresh: the Secret's certificate parses with its key, names every host, is verified by the
// bundle, and is not past two thirds of its validity.
func (c *Certs) fresh(data map[string][]byte, now time.Time) bool {
	pair, err := tls.X509KeyPair(data[KeyCert], data[KeyKey])
	if err != nil {
		return false
	}
	leaf := pair.Leaf
	renewAt := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
	if now.Before(leaf.NotBefore) || !now.Before(renewAt) {
		return false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data[KeyCABundle]) {
		return false
	}
	for _, h := range c.hosts() {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: h, CurrentTime: now}); err != nil {
			return false
		}
	}
	return true
}

// hosts the certificate names: the Service's DNS names and the extra hosts.
func (c *Certs) hosts() []string {
	svc, ns := c.opts.Service, c.opts.Namespace
	return append([]string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}, c.opts.ExtraHosts...)
}

// issue makes a new CA and a serving certificate signed by it, both valid from now for
// Validity, as the Secret's data.
func (c *Certs) issue(now time.Time) (map[string][]byte, error) {
	notBefore, notAfter := now.Add(-time.Minute), now.Add(c.opts.Validity) // a minute for clock skew
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	ca := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: fmt.Sprintf("vpcnat-webhook-ca@%d", now.Unix())},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("serving key: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: c.opts.Service + "." + c.opts.Namespace + ".svc"},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range c.hosts() {
		if ip := net.ParseIP(h); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, key.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	keyPEM, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		KeyCABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		KeyCert:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyKey:      keyPEM,
	}, nil
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// validCAs are the PEM certificates of bundle not expired at now: a bundle keeps the previous
// CA through one renewal, and drops it at the next.
func validCAs(bundle []byte, now time.Time) []byte {
	var out []byte
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err == nil && now.Before(cert.NotAfter) {
			out = append(out, pem.EncodeToMemory(b)...)
			return out // the newest CA of the old bundle, which signed the old certificate
		}
	}
}
