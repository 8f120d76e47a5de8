package kubeenv

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// PodRunner plays scheduler and kubelet for the pods of one namespace and label selector: there is
// no kubelet here, so pods created by the ReplicaSet controller would stay Pending. It binds each
// unscheduled pod to Node (through the binding subresource, as the scheduler does), reports it
// Running and Ready (through the status subresource, as a kubelet does), and completes the
// graceful deletion of a bound pod (as a kubelet does once its containers stopped).
type PodRunner struct {
	Node string
	// Bound is called (from the runner's goroutine) after each pod is bound, with the time.
	Bound func(pod *corev1.Pod, at time.Time)

	client kubernetes.Interface
	work   chan *corev1.Pod
}

// RunPods starts a PodRunner for namespace/selector until ctx ends.
func (e *Env) RunPods(ctx context.Context, namespace, selector, node string) (*PodRunner, error) {
	client, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return nil, err
	}
	r := &PodRunner{Node: node, client: client, work: make(chan *corev1.Pod, 1024)}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := f.Core().V1().Pods().Informer()
	enqueue := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && (p.DeletionTimestamp != nil || p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning) {
			select {
			case r.work <- p:
			case <-ctx.Done():
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n any) { enqueue(n) },
	}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		f.Shutdown()
	}()
	go r.loop(ctx)
	return r, nil
}

func (r *PodRunner) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-r.work:
			r.handle(ctx, p)
		}
	}
}

func (r *PodRunner) handle(ctx context.Context, p *corev1.Pod) {
	pods := r.client.CoreV1().Pods(p.Namespace)
	if p.DeletionTimestamp != nil {
		// A bound pod's graceful deletion waits for its kubelet to say the containers stopped;
		// this is that kubelet.
		if p.Spec.NodeName != "" {
			_ = pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0)),
				Preconditions: &metav1.Preconditions{UID: &p.UID}})
		}
		return
	}
	if p.Spec.NodeName == "" {
		err := pods.Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: r.Node},
		}, metav1.CreateOptions{})
		if err != nil {
			return // gone, or bound already: the next event says which
		}
		if r.Bound != nil {
			r.Bound(p, time.Now())
		}
		return // the update event of the binding brings the pod back for its status
	}
	cur, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err != nil || cur.Status.Phase == corev1.PodRunning || cur.DeletionTimestamp != nil {
		return
	}
	now := metav1.Now()
	cur.Status.Phase = corev1.PodRunning
	cur.Status.StartTime = &now
	cur.Status.HostIP, cur.Status.PodIP = "127.0.0.1", "127.0.0.1"
	cur.Status.Conditions = nil
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		cur.Status.Conditions = append(cur.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	cur.Status.ContainerStatuses = nil
	for _, c := range cur.Spec.Containers {
		cur.Status.ContainerStatuses = append(cur.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	_, _ = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
}
