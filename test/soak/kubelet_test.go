package soak

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

// kubelet plays scheduler, kubelet and container runtime for the gateway pods of one namespace:
// it binds each pod to its node; gives a bound pod a sandbox (a network namespace of the
// topology and CNI ADD through the node's chain with the pod's annotations, as containerd passes
// them) and reports it Running and Ready; and when the pod is deleted it runs CNI DEL, removes
// the namespace, and completes the deletion. Sandboxes are created and torn down one pod at a
// time per worker, like a runtime's.
type kubelet struct {
	node   string
	client kubernetes.Interface
	topo   *topo.Topology
	chain  *cnichain.Chain
	list   *libcni.NetworkConfigList
	lister corelisters.PodNamespaceLister
	queue  workqueue.TypedRateLimitingInterface[string]

	// logf reports each failed ADD or DEL as it happens.
	logf func(format string, args ...any)

	mu        sync.Mutex
	seq       int
	sandboxes map[string]*sandbox // by namespace/name
	created   int
	removed   int
	addErrs   []string
	delErrs   []string
}

type sandbox struct {
	uid  string
	role string // the topology role of its netns
	pod  cnichain.Pod
}

func startKubelet(ctx context.Context, client kubernetes.Interface, namespace, selector, node string,
	tp *topo.Topology, chain *cnichain.Chain, list *libcni.NetworkConfigList, logf func(string, ...any)) (*kubelet, error) {
	k := &kubelet{logf: logf, node: node, client: client, topo: tp, chain: chain, list: list, sandboxes: map[string]*sandbox{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 5*time.Second))}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := f.Core().V1().Pods()
	k.lister = inf.Lister().Pods(namespace)
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			k.queue.Add(key)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) }, DeleteFunc: enqueue,
	}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return nil, errors.New("kubelet: pod cache did not sync")
	}
	go func() {
		<-ctx.Done()
		k.queue.ShutDown()
		f.Shutdown()
	}()
	for range 2 {
		go func() {
			for {
				key, quit := k.queue.Get()
				if quit {
					return
				}
				if err := k.handle(ctx, key); err != nil && ctx.Err() == nil {
					k.queue.AddRateLimited(key)
				} else {
					k.queue.Forget(key)
				}
				k.queue.Done(key)
			}
		}()
	}
	return k, nil
}

func (k *kubelet) handle(ctx context.Context, key string) error {
	_, name, _ := cache.SplitMetaNamespaceKey(key)
	pod, err := k.lister.Get(name)
	if apierrors.IsNotFound(err) {
		return k.teardown(key, "")
	}
	if err != nil {
		return err
	}
	if err := k.teardown(key, string(pod.UID)); err != nil { // an older pod of the same name
		return err
	}
	pods := k.client.CoreV1().Pods(pod.Namespace)
	if pod.DeletionTimestamp != nil {
		if pod.Spec.NodeName == "" {
			return nil
		}
		if err := k.teardown(key, "*"); err != nil {
			return err
		}
		err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0)),
			Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("completing the deletion of %s: %w", key, err)
		}
		return nil
	}
	if pod.Spec.NodeName == "" {
		err := pods.Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: k.node},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("binding %s: %w", key, err)
		}
		return nil // the binding's update event brings the pod back
	}
	if pod.Spec.NodeName != k.node {
		return nil
	}
	if err := k.ensureSandbox(key, pod); err != nil {
		return err
	}
	if pod.Status.Phase == corev1.PodRunning {
		return nil
	}
	cur := pod.DeepCopy()
	now := metav1.Now()
	cur.Status.Phase = corev1.PodRunning
	cur.Status.StartTime = &now
	cur.Status.HostIP = "127.0.0.1"
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
	if _, err := pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reporting %s running: %w", key, err)
	}
	return nil
}

// ensureSandbox creates the pod's sandbox unless it has one: a netns, then CNI ADD. A failed
// ADD is undone (DEL, netns removed) and retried, as a kubelet does.
func (k *kubelet) ensureSandbox(key string, pod *corev1.Pod) error {
	k.mu.Lock()
	if sb := k.sandboxes[key]; sb != nil {
		k.mu.Unlock()
		return nil
	}
	k.seq++
	role := fmt.Sprintf("s%d", k.seq)
	k.mu.Unlock()
	annots := map[string]string{}
	for a, v := range pod.Annotations {
		annots[a] = v
	}
	sb := &sandbox{uid: string(pod.UID), role: role, pod: cnichain.Pod{Role: role, Namespace: pod.Namespace, Name: pod.Name,
		UID: string(pod.UID), ContainerID: fmt.Sprintf("%064x", k.seq), Annotations: annots}}
	if err := k.topo.AddNS(role); err != nil {
		return k.addFailed(key, err)
	}
	// The test's UDP datagrams through DNATs get no answer; their conntrack entries must outlive
	// the churn so that the final check sees every one a removed mapping left behind.
	if _, err := k.topo.Exec(role, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=3600"); err != nil {
		_ = k.topo.DelNS(role)
		return k.addFailed(key, err)
	}
	if _, err := k.chain.Add(k.list, sb.pod); err != nil {
		delErr := k.chain.Del(k.list, sb.pod)
		_ = k.topo.DelNS(role)
		return k.addFailed(key, errors.Join(fmt.Errorf("CNI ADD: %w", err), delErr))
	}
	k.mu.Lock()
	k.sandboxes[key] = sb
	k.created++
	k.mu.Unlock()
	return nil
}

func (k *kubelet) addFailed(key string, err error) error {
	k.mu.Lock()
	k.addErrs = append(k.addErrs, fmt.Sprintf("%s: %v", key, err))
	k.mu.Unlock()
	if k.logf != nil {
		k.logf("kubelet: sandbox of %s: %v (retried)", key, err)
	}
	return err
}

// teardown runs CNI DEL for the sandbox of key and removes its netns, unless the sandbox
// belongs to the pod with UID keep ("" tears down whatever is there; "*" too).
func (k *kubelet) teardown(key, keep string) error {
	k.mu.Lock()
	sb := k.sandboxes[key]
	if sb == nil || (keep != "" && keep != "*" && sb.uid == keep) {
		k.mu.Unlock()
		return nil
	}
	delete(k.sandboxes, key)
	k.mu.Unlock()
	err := k.chain.Del(k.list, sb.pod)
	if err == nil {
		err = k.topo.DelNS(sb.role)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.delErrs = append(k.delErrs, fmt.Sprintf("%s: %v", key, err))
		if k.logf != nil {
			k.logf("kubelet: tearing down the sandbox of %s: %v (retried)", key, err)
		}
		k.sandboxes[key] = sb // retried
		return err
	}
	k.removed++
	return nil
}

// sandboxOf is the netns role of the live sandbox of a pod ("" when it has none).
func (k *kubelet) sandboxOf(pod *corev1.Pod) *sandbox {
	k.mu.Lock()
	defer k.mu.Unlock()
	sb := k.sandboxes[pod.Namespace+"/"+pod.Name]
	if sb == nil || sb.uid != string(pod.UID) {
		return nil
	}
	return sb
}

func (k *kubelet) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.sandboxes)
}
