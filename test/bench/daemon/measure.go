package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/state"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

type latencyRow struct {
	rules          int
	size           int
	encoding       string // of the desired annotation measured: plain, gzip or deflate-parts
	live, reported time.Duration
}

type memoryResult struct {
	cold, restart  time.Duration
	rss, peak      int // KiB
	restartRSS     int
	restartChanges float64
}

// latency plumbs the probe gateway through the CNI chain, runs a daemon, and for each size
// applies n rules, then moves the probe DNAT to a new port o.rounds times, timing each patch
// until a real connection from the client through the new port reaches pod2.
func (b *bench) latency(ctx context.Context) ([]latencyRow, error) {
	in, err := withRules(b.o.repo, 1)
	if err != nil {
		return nil, err
	}
	pod, err := b.c.gateway(ctx, in)
	if err != nil {
		return nil, err
	}
	b.probe = pod
	list, err := b.chain.ConfList("1.1.0", true, `"gatewayNamespaces": ["`+b.c.ns+`"]`)
	if err != nil {
		return nil, err
	}
	sandbox := cnichain.Pod{Role: topo.Gateway, Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID),
		ContainerID: "bench-" + b.tp.Prefix, Annotations: pod.Annotations}
	if _, err := b.chain.Add(list, sandbox); err != nil {
		return nil, fmt.Errorf("CNI ADD of the probe gateway: %w", err)
	}
	srv, err := b.tp.Listen(topo.Pod2, "tcp", topo.Pod2IP+":80")
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	d, err := startDaemon(b.o.daemonBin, b.o.logDir, b.args...)
	if err != nil {
		return nil, err
	}
	defer d.stop()

	var rows []latencyRow
	gen := int64(0)
	for si, n := range b.o.sizes {
		if in, err = withRules(b.o.repo, n); err != nil {
			return nil, err
		}
		r := latencyRow{rules: n}
		var live, reported []time.Duration
		// Round 0 applies the size's rules (from the previous size's); it is not counted.
		for i := 0; i <= b.o.rounds; i++ {
			gen++
			port := 20000 + 100*si + i
			in.Gateway.Generation = gen
			in.Gateway.Spec.DnatRules[0].ExternalPort = intstr.FromInt(port)
			// The controller's side (plan, encoding, hash) happens before the clock starts:
			// measured is the patch request on.
			patch, size, hash, err := b.c.desiredPatch(pod, in)
			if err != nil {
				return nil, fmt.Errorf("%d rules, round %d: %w", n, i, err)
			}
			l, rep, err := b.patchAndProbe(ctx, pod, port, hash, func() error { return b.c.send(ctx, pod, patch) })
			if err != nil {
				return nil, fmt.Errorf("%d rules, round %d: %w", n, i, err)
			}
			if i > 0 {
				live, reported = append(live, l), append(reported, rep)
			}
			r.size = size
			r.encoding = b.c.lastEncoding
		}
		r.live, r.reported = median(live), median(reported)
		rows = append(rows, r)
	}
	return rows, nil
}

// patchAndProbe sends patch (the desired annotation whose applied hash is hash), then connects from the client to the probe EIP's port every
// millisecond until pod2 answers (a missing rule is answered at once by a TCP reset from the
// gateway, which holds the EIP), then waits for the applied annotation of the new value.
func (b *bench) patchAndProbe(ctx context.Context, pod *corev1.Pod, port int, hash string, patch func() error) (live, reported time.Duration, err error) {
	start := time.Now()
	if err := patch(); err != nil {
		return 0, 0, err
	}
	addr := fmt.Sprintf("%s:%d", probeEIP, port)
	for {
		r, err := b.tp.Request(topo.Client, "tcp", addr, 200*time.Millisecond)
		if err == nil && r.Local == topo.Pod2IP+":80" {
			live = time.Since(start)
			break
		}
		if time.Since(start) > time.Minute {
			return 0, 0, fmt.Errorf("%s not forwarded to pod2 within a minute (last: %v)", addr, err)
		}
		time.Sleep(time.Millisecond)
	}
	for {
		a, err := b.c.applied(ctx, pod)
		if err != nil {
			return 0, 0, err
		}
		if a != nil && a.Hash == hash {
			if a.Error != "" {
				return 0, 0, fmt.Errorf("applied error: %s", a.Error)
			}
			return live, time.Since(start), nil
		}
		if time.Since(start) > time.Minute {
			return 0, 0, fmt.Errorf("applied annotation not updated within a minute")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// memory puts o.gateways-1 small gateways next to the probe gateway (their netns made by hand,
// their records written as the plugin would: the daemon creates their NICs), then times a
// fresh daemon converging all of them and a restarted one reading them back, and reads each
// one's resident set.
func (b *bench) memory(ctx context.Context) (memoryResult, error) {
	var m memoryResult
	// The probe gateway goes back to one rule: 50 gateways of the usual size.
	in, err := withRules(b.o.repo, 1)
	if err != nil {
		return m, err
	}
	in.Gateway.Generation = 1 << 20
	if _, _, err := b.c.desired(ctx, b.probe, in); err != nil {
		return m, err
	}
	store := state.Store{Dir: b.chain.StateDir}
	for i := 1; i < b.o.gateways; i++ {
		in, err := small(b.o.repo, i)
		if err != nil {
			return m, err
		}
		pod, err := b.c.gateway(ctx, in)
		if err != nil {
			return m, err
		}
		role := fmt.Sprintf("b%02d", i)
		if err := b.tp.AddNS(role); err != nil {
			return m, err
		}
		if err := store.Write(state.Record{PodUID: string(pod.UID), Namespace: pod.Namespace, Name: pod.Name,
			Gateway: in.Gateway.Name, ContainerID: "bench-ctr-" + role, Netns: b.tp.Path(role), IfNames: []string{"net1"}}); err != nil {
			return m, err
		}
		if _, _, err := b.c.desired(ctx, pod, in); err != nil {
			return m, err
		}
	}
	want := float64(b.o.gateways)
	start := time.Now()
	d, err := startDaemon(b.o.daemonBin, b.o.logDir, b.args...)
	if err != nil {
		return m, err
	}
	err = d.waitCounter(want, 5*time.Minute, "vpcnat_daemon_syncs_total", "result", "success")
	m.cold = time.Since(start)
	if err == nil {
		time.Sleep(2 * time.Second) // let the garbage collector and the caches settle
		m.rss, m.peak, err = d.memory()
	}
	d.stop()
	if err != nil {
		return m, err
	}

	start = time.Now()
	if d, err = startDaemon(b.o.daemonBin, b.o.logDir, b.args...); err != nil {
		return m, err
	}
	defer d.stop()
	if err := d.waitCounter(want, 5*time.Minute, "vpcnat_daemon_syncs_total", "result", "success"); err != nil {
		return m, err
	}
	m.restart = time.Since(start)
	if m.restartChanges, err = d.counter("vpcnat_daemon_kernel_changes_total"); err != nil {
		return m, err
	}
	time.Sleep(2 * time.Second)
	m.restartRSS, _, err = d.memory()
	return m, err
}
