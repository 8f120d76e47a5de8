package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/admission"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/test/kubeenv"
)

// The webhook's names, as deploy/controller and the controller's RBAC have them.
const (
	webhookConfig = "vpcnat"
	webhookSecret = "vpcnat-webhook-cert"
)

// certOptions are the deployment's certificate options, plus 127.0.0.1 for a test server.
func certOptions(now func() time.Time) admission.CertOptions {
	return admission.CertOptions{Namespace: ns, Secret: webhookSecret, Service: "vpcnat-webhook",
		ExtraHosts: []string{"127.0.0.1"}, WebhookConfig: webhookConfig, Now: now}
}

// webhookConfiguration is deploy/controller's configuration with the in-process server's URL
// instead of the Service, and no CA bundle (the controller's Rotate writes it).
func webhookConfiguration(url string) *admissionregv1.ValidatingWebhookConfiguration {
	ignore, none, equivalent := admissionregv1.Ignore, admissionregv1.SideEffectClassNone, admissionregv1.Equivalent
	scope := admissionregv1.ClusterScope
	return &admissionregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: webhookConfig},
		Webhooks: []admissionregv1.ValidatingWebhook{{
			Name:         "validate.vpcnat.kubeovn.io",
			ClientConfig: admissionregv1.WebhookClientConfig{URL: &url},
			Rules: []admissionregv1.RuleWithOperations{{
				Operations: []admissionregv1.OperationType{admissionregv1.Create, admissionregv1.Update},
				Rule: admissionregv1.Rule{APIGroups: []string{"kubeovn.io"}, APIVersions: []string{"v1"},
					Resources: []string{"vpcnatgateways", "subnets"}, Scope: &scope},
			}},
			MatchPolicy: &equivalent, FailurePolicy: &ignore, SideEffects: &none,
			AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: new(int32(5)),
		}},
	}
}

// removeWebhook deletes the webhook configuration and the certificate Secret, waiting until they
// are gone.
func removeWebhook(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	_ = admin.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, webhookConfig, metav1.DeleteOptions{})
	_ = admin.kube.CoreV1().Secrets(ns).Delete(ctx, webhookSecret, metav1.DeleteOptions{})
	eventually(t, waitLong, "webhook configuration and Secret gone", func() error {
		if _, err := admin.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, webhookConfig, metav1.GetOptions{}); !notFound(err) {
			return fmt.Errorf("configuration: %v", err)
		}
		if _, err := admin.kube.CoreV1().Secrets(ns).Get(ctx, webhookSecret, metav1.GetOptions{}); !notFound(err) {
			return fmt.Errorf("secret: %v", err)
		}
		return nil
	})
}

// webhookRun is a controller with its webhook, as vpcnat-controller --webhook-addr runs them.
type webhookRun struct {
	stopServer func()
	certs      *admission.Certs
}

// startWebhookController runs a controller as its ServiceAccount and serves its webhook on
// 127.0.0.1, registered with the API server by a ValidatingWebhookConfiguration whose CA bundle
// the controller's certificate rotation writes (the leader's first Rotate). It returns once the
// API server calls the webhook: an object the webhook refuses is refused.
func startWebhookController(t *testing.T) *webhookRun {
	t.Helper()
	removeWebhook(t)
	t.Cleanup(func() { removeWebhook(t) })
	c, err := newClients(controllerConfig)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ctrl, err := controller.New(c.kube, c.ovn, controller.Options{Workers: 4, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := admission.NewCerts(c.kube, certOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, err := admission.Serve(ctx, "127.0.0.1:0", certs, admission.NewWebhook(ctrl.Claims(), ctrl.ClaimsSynced, reg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx,
		webhookConfiguration("https://"+addr.String()+admission.Path), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := certs.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	kubeenv.RunInBackground(t, "controller", ctrl.Run)
	waitWebhookServing(t)
	return &webhookRun{stopServer: cancel, certs: certs}
}

// waitWebhookServing waits until the API server calls the webhook (it learns configurations
// asynchronously) and the webhook's caches hold a Subnet just created: a dry-run create of
// another Vpc's Subnet on that Subnet's segment is refused.
func waitWebhookServing(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	owner := subnet("webhook-probe-owner", "vpc-webhook-probe-a", "198.51.100.0/28", "br-probe")
	if _, err := admin.ovn.Subnets.Create(ctx, owner, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.ovn.Subnets.Delete(context.Background(), owner.Name, metav1.DeleteOptions{}) })
	probe := subnet("webhook-probe", "vpc-webhook-probe-b", "198.51.100.16/28", "br-probe")
	eventually(t, waitLong, "the API server calls the webhook", func() error {
		_, err := admin.ovn.Subnets.Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			return errors.New("a Subnet on another Vpc's segment was admitted")
		}
		if !strings.Contains(err.Error(), "denied the request") {
			return err
		}
		return nil
	})
	if err := admin.ovn.Subnets.Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// subnet is a Subnet of vpc on a node bridge, its gateway the CIDR's first address.
func subnet(name, vpc, cidr, bridge string) *v1.Subnet {
	network, _, _ := strings.Cut(cidr, "/")
	a := strings.LastIndex(network, ".")
	var last int
	fmt.Sscan(network[a+1:], &last)
	return &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.SubnetSpec{
		Vpc: vpc, CIDRBlock: cidr, Gateway: fmt.Sprintf("%s.%d", network[:a], last+1),
		NatGatewayAttachment: &v1.SubnetAttachment{Bridge: bridge}}}
}
