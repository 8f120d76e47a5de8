package admission

import (
	"bytes"
	"context"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// patchCABundle sets bundle as the CA bundle of every webhook of the configuration. A
// configuration that does not exist (removed by its admin: the webhook is off) is left so.
func (c *Certs) patchCABundle(ctx context.Context, bundle []byte) error {
	api := c.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	cfg, err := api.Get(ctx, c.opts.WebhookConfig, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		klog.FromContext(ctx).V(2).Info("No ValidatingWebhookConfiguration to give the CA bundle", "name", c.opts.WebhookConfig)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", c.opts.WebhookConfig, err)
	}
	upd := cfg.DeepCopy()
	changed := false
	for i := range upd.Webhooks {
		if !bytes.Equal(upd.Webhooks[i].ClientConfig.CABundle, bundle) {
			upd.Webhooks[i].ClientConfig.CABundle = bundle
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating the CA bundle of ValidatingWebhookConfiguration %s: %w", c.opts.WebhookConfig, err)
	}
	klog.FromContext(ctx).Info("Updated the webhook CA bundle", "validatingWebhookConfiguration", c.opts.WebhookConfig)
	return nil
}

// RunRotation rotates (Rotate) every period until ctx ends: the leader's loop. An error is
// logged and retried at the next period.
func (c *Certs) RunRotation(ctx context.Context, period time.Duration) {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := c.Rotate(ctx); err != nil {
			klog.FromContext(ctx).Error(err, "Webhook certificate rotation failed; retrying", "in", period)
		}
	}, period)
}

// WatchWebhookConfig looks again (Rotate) whenever the ValidatingWebhookConfiguration is added or
// changed, until ctx ends: the leader's loop, so that a configuration re-applied from deploy/
// (which ships no caBundle) calls the webhook again within moments instead of at the next
// periodic look. It watches the one configuration by name (RBAC grants list and watch of that
// name only). Our own update comes back as an event that finds the bundle in place: two GETs,
// nothing written.
func (c *Certs) WatchWebhookConfig(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(c.kube, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", c.opts.WebhookConfig).String()
		}))
	inf := factory.Admissionregistration().V1().ValidatingWebhookConfigurations().Informer()
	look := func(obj any) {
		if _, ok := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration); !ok {
			return
		}
		if err := c.Rotate(ctx); err != nil {
			klog.FromContext(ctx).Error(err, "Restoring the webhook CA bundle failed; the periodic look retries")
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    look,
		UpdateFunc: func(_, n any) { look(n) },
	}); err != nil {
		klog.FromContext(ctx).Error(err, "Watching the webhook configuration")
		return
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
}

// WatchSecret serves each version of the Secret as it is written, until ctx ends: every
// replica's loop, so that a certificate the leader issued or renewed is served at once. It
// watches the one Secret by name (RBAC grants list and watch of that name only).
func (c *Certs) WatchSecret(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(c.kube, 10*time.Minute,
		informers.WithNamespace(c.opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", c.opts.Secret).String()
		}))
	inf := factory.Core().V1().Secrets().Informer()
	use := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		if err := c.use(ctx, s); err != nil {
			klog.FromContext(ctx).Error(err, "Not serving the Secret's certificate")
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    use,
		UpdateFunc: func(_, n any) { use(n) },
	}); err != nil {
		klog.FromContext(ctx).Error(err, "Watching the webhook certificate")
		return
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
}
