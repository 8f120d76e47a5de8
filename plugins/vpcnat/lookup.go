package main

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// lookupTimeout bounds the fallback API call: the runtime is waiting on the pod sandbox.
const lookupTimeout = 3 * time.Second

// lookupAnnotations is the fallback for runtimes that do not pass pod annotations: one GET of
// the pod. It runs only for pods in a gateway namespace, never for a normal pod.
func lookupAnnotations(kubeconfig, namespace, name string) (map[string]string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("vpcnat: kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.Timeout = lookupTimeout
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("vpcnat: kubeconfig %s: %w", kubeconfig, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("vpcnat: looking up pod %s/%s for its annotations: %w", namespace, name, err)
	}
	return pod.Annotations, nil
}
