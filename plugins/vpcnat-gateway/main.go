// Command vpcnat-gateway is the full implementation of the chained CNI meta plugin vpcnat (type
// "vpcnat", always last in the chain). The runtime executes the small dispatcher `vpcnat`, which
// answers ADD and DEL of normal pods itself and hands every other call, unchanged, to this
// binary installed next to it (see plugins/vpcnat). For a vpcnat gateway pod it creates net1 (a
// macvlan on the node's underlay NIC) and one NIC per VPC subnet inside the pod's network
// namespace, from the NIC plan the controller put in the pod's annotations, and writes the
// attachment record the daemon reads. Every other pod is passed through untouched: its
// prevResult is printed (converted to the configuration's version where the dispatcher could not
// print it as it came), with no kernel work, no API call and no file written.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/state"
	"github.com/vpcnat/vpcnat/plugins/internal/conf"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, version.PluginSupports(conf.SupportedVersions...), "vpcnat: plumbs vpcnat NAT gateway pods (net1 + subnet NICs)")
}

// chained parses what ADD and CHECK share: the config (which must carry a prevResult), CNI_ARGS
// and, for a gateway pod, its NIC plan (nil for any other pod).
func chained(args *skel.CmdArgs) (*PluginConf, *conf.Args, *annotations.NICPlan, error) {
	pc, err := parseConfig(args.StdinData)
	if err != nil {
		return nil, nil, nil, err
	}
	// A chained plugin without a previous result has nothing to extend: refuse rather than
	// invent a result for the pod's primary interface.
	if pc.CNI.PrevResult == nil {
		return nil, nil, nil, fmt.Errorf("vpcnat: must be chained after a plugin that returns a result (no prevResult)")
	}
	k8s, err := parseArgs(args.Args)
	if err != nil {
		return nil, nil, nil, err
	}
	plan, err := pc.gatewayPlan(k8s)
	return pc, k8s, plan, err
}

func cmdAdd(args *skel.CmdArgs) (err error) {
	pc, k8s, plan, err := chained(args)
	if err != nil {
		return err
	}
	if plan == nil {
		return types.PrintResult(pc.CNI.PrevResult, pc.CNIVersion)
	}
	result, err := current.NewResultFromResult(pc.CNI.PrevResult)
	if err != nil {
		return fmt.Errorf("vpcnat: converting prevResult: %w", err)
	}
	h, err := netconf.OpenHandles(args.Netns)
	if err != nil {
		return fmt.Errorf("vpcnat: %w", err)
	}
	defer h.Close()
	// Every failure from here on undoes what this ADD made (links in the pod netns, node-side
	// veth ends): no record is written for a failed ADD, so DEL would not know to remove them.
	var made undo
	defer func() {
		if err != nil {
			err = errors.Join(err, made.run(h))
		}
	}()
	record, err := plumb(h, args, plan, result, &made)
	if err != nil {
		return err
	}
	record.PodUID, record.Namespace, record.Name = k8s.RecordKey(), k8s.PodNamespace, k8s.PodName
	if err := (state.Store{Dir: pc.StateDir}).Write(*record); err != nil {
		return fmt.Errorf("vpcnat: %w", err)
	}
	return types.PrintResult(result, pc.CNIVersion)
}

// undo is what an ADD made, in the order it made it, so that a failed ADD can remove it again.
// Links that were already there (an ADD repeated for the same sandbox) are never deleted.
type undo struct {
	links     []string // in the pod netns, absent before this ADD
	hostLinks []string // node-side veth ends, absent before this ADD
}

// run removes what the failed ADD made; already gone is fine.
func (u *undo) run(h *netconf.Handles) error {
	var errs []error
	for i := len(u.links) - 1; i >= 0; i-- { // net1 (made first) last: the reverse of ADD
		del := netconf.DeleteSubnetNIC
		if u.links[i] == annotations.ExternalIfName {
			del = netconf.DeleteExternalNIC
		}
		if _, err := del(h, u.links[i]); err != nil {
			errs = append(errs, fmt.Errorf("vpcnat: rolling back the failed ADD: %w", err))
		}
	}
	// Only node-side ends whose peer is in this sandbox's netns: a replacement sandbox of the
	// same gateway may have made its own of the same name meanwhile.
	if err := (hostOwner{host: h.Host, ns: h.GatewayNS}).deleteHostLinks(u.hostLinks); err != nil {
		errs = append(errs, fmt.Errorf("vpcnat: rolling back the failed ADD: %w", err))
	}
	return errors.Join(errs...)
}

// absent reports whether nh has no link called name (an error other than "not found" is one).
func absent(nh *netlink.Handle, name, where string) (bool, error) {
	_, err := nh.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &nf):
		return true, nil
	default:
		return false, fmt.Errorf("vpcnat: looking up %s in the %s netns: %w", name, where, err)
	}
}

// plumb creates the gateway's NICs inside the pod netns and adds them to result, with the
// addresses the gateway is configured to hold on them. It does not add those addresses: the
// daemon claims every address of a gateway only after probing that no other host on the segment
// holds it (docs/addresses.md), and a plugin run cannot defend an address afterwards. It notes in
// made, before each step, what that step may create, so the caller can undo a half-done ADD
// (also a step that failed after creating its link, e.g. net1 that cannot go up).
func plumb(h *netconf.Handles, args *skel.CmdArgs, plan *annotations.NICPlan, result *current.Result, made *undo) (*state.Record, error) {
	rec := &state.Record{Gateway: plan.Gateway, ContainerID: args.ContainerID, Netns: args.Netns}

	isNew, err := absent(h.Gateway, plan.External.IfName, "pod")
	if err != nil {
		return nil, err
	}
	if isNew {
		made.links = append(made.links, plan.External.IfName)
	}
	if err := ensureExternalNIC(h, plan.External); err != nil {
		return nil, fmt.Errorf("vpcnat: %w", err)
	}
	rec.IfNames = append(rec.IfNames, plan.External.IfName)
	if err := addInterface(h, result, args.Netns, plan.External.IfName, nil); err != nil {
		return nil, err
	}
	for _, nic := range plan.Subnets {
		if nic.Attachment.Type == annotations.AttachPrimary {
			continue // eth0 and its addresses belong to the primary CNI
		}
		isNew, err := absent(h.Gateway, nic.IfName, "pod")
		if err != nil {
			return nil, err
		}
		if isNew {
			made.links = append(made.links, nic.IfName)
		}
		if hn := nic.Attachment.HostIfName; hn != "" {
			isNew, err := absent(h.Host, hn, "node")
			if err != nil {
				return nil, err
			}
			if isNew {
				made.hostLinks = append(made.hostLinks, hn)
			}
		}
		if _, err := netconf.EnsureSubnetNIC(h, nic); err != nil {
			return nil, fmt.Errorf("vpcnat: %w", err)
		}
		rec.IfNames = append(rec.IfNames, nic.IfName)
		if hn := nic.Attachment.HostIfName; hn != "" {
			hl, err := noteHostLink(h.Host, h.Gateway, hn, nic.IfName)
			if err != nil {
				return nil, err
			}
			rec.HostIfNames = append(rec.HostIfNames, hn)
			rec.HostLinks = append(rec.HostLinks, hl)
		}
		addrs := make([]netip.Prefix, 0, len(nic.Addresses))
		for _, a := range nic.Addresses {
			p, perr := netip.ParsePrefix(a)
			if perr != nil { // ParseNICPlan validated them; a failure here is a bug
				return nil, fmt.Errorf("vpcnat: subnet %s: address %q: %w", nic.Subnet, a, perr)
			}
			addrs = append(addrs, p)
		}
		if err := addInterface(h, result, args.Netns, nic.IfName, addrs); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// externalNICWait bounds how long ADD waits for net1's MAC to be free on the master.
const externalNICWait = 5 * time.Second

// ensureExternalNIC creates net1, waiting while its MAC is still taken on the master: when a
// gateway pod is recreated, the runtime may create the new sandbox while the old one (whose net1
// has the same, name-derived MAC) is still being torn down, tens of milliseconds later.
func ensureExternalNIC(h *netconf.Handles, nic annotations.ExternalNIC) error {
	deadline := time.Now().Add(externalNICWait)
	for {
		_, err := netconf.EnsureExternalNIC(h, nic)
		if !errors.Is(err, unix.EADDRINUSE) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// addInterface appends one of our interfaces, and its addresses, to the CNI result.
func addInterface(h *netconf.Handles, result *current.Result, sandbox, name string, addrs []netip.Prefix) error {
	l, err := h.Gateway.LinkByName(name)
	if err != nil {
		return fmt.Errorf("vpcnat: looking up %s after creating it: %w", name, err)
	}
	result.Interfaces = append(result.Interfaces, &current.Interface{
		Name: name, Mac: l.Attrs().HardwareAddr.String(), Sandbox: sandbox,
	})
	idx := len(result.Interfaces) - 1
	for _, p := range addrs {
		result.IPs = append(result.IPs, &current.IPConfig{
			Interface: current.Int(idx),
			Address:   net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		})
	}
	return nil
}

// unplumb removes what a record's ADD made: its node-side veth ends (only those it can prove are
// its own: see hostOwner), then its NICs in netnsPath ("": the runtime passed no netns, so only
// node-side ends are looked at, their ownership proven by the record's netns when it is still
// there). A netns or link already gone is fine.
func unplumb(netnsPath string, rec *state.Record) error {
	ownerNS := netnsPath
	if ownerNS == "" {
		ownerNS = rec.Netns
	}
	ns, err := openNetns(ownerNS)
	if err != nil {
		return err
	}
	defer ns.Close()
	if netnsPath == "" || !ns.IsOpen() {
		// No pod netns to clean (or the runtime already destroyed it, and our NICs with it).
		host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("vpcnat: netlink socket in the node netns: %w", err)
		}
		defer host.Close()
		return hostOwner{host: host, ns: ns, rec: rec}.deleteHostLinks(rec.HostIfNames)
	}
	h, err := netconf.NewHandles(ns)
	if err != nil {
		return fmt.Errorf("vpcnat: %w", err)
	}
	defer h.Close()
	if err := (hostOwner{host: h.Host, ns: ns, rec: rec}).deleteHostLinks(rec.HostIfNames); err != nil {
		return err
	}
	// Subnet NICs first and net1 last: until net1 is gone its MAC stays taken on the master, so
	// a replacement sandbox of the same gateway (same net1 MAC) cannot finish its ADD before this
	// DEL has removed everything else of the old sandbox. Deleting net1 also frees that MAC at
	// once rather than when the kernel gets round to tearing the netns down.
	// (The record lists net1 first.)
	for i := range rec.IfNames {
		name, del := rec.IfNames[(i+1)%len(rec.IfNames)], netconf.DeleteSubnetNIC
		if i == len(rec.IfNames)-1 {
			del = netconf.DeleteExternalNIC
		}
		if _, err := del(h, name); err != nil {
			return fmt.Errorf("vpcnat: netns %s: %w", netnsPath, err)
		}
	}
	return nil
}

func cmdDel(args *skel.CmdArgs) error {
	pc, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	k8s, err := parseArgs(args.Args)
	if err != nil {
		return err
	}
	// DEL needs no annotations: the record says what ADD made. No record (also: a key no record
	// can have, as when the runtime passes no pod identity), or one of a newer sandbox of the
	// same pod, means there is nothing of ours to remove.
	store := state.Store{Dir: pc.StateDir}
	rec, err := store.Read(k8s.RecordKey())
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, state.ErrInvalidName) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("vpcnat: %w", err)
	}
	if rec.ContainerID != args.ContainerID {
		return nil
	}
	if err := unplumb(args.Netns, rec); err != nil {
		return err
	}
	return store.Delete(rec.PodUID, args.ContainerID)
}

func cmdCheck(args *skel.CmdArgs) error {
	_, _, plan, err := chained(args)
	if err != nil || plan == nil {
		return err
	}
	return checkPlumbing(args.Netns, plan)
}

func cmdStatus(args *skel.CmdArgs) error {
	pc, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if err := (state.Store{Dir: pc.StateDir}).Writable(); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "vpcnat: state directory not writable", err.Error())
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	pc, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	for _, a := range pc.CNI.ValidAttachments {
		valid[a.ContainerID] = true
	}
	store := state.Store{Dir: pc.StateDir}
	recs, errs := store.List()
	for _, rec := range recs {
		if valid[rec.ContainerID] {
			continue
		}
		// Only the node-side ends this attachment made (the pod-side NICs go with the netns the
		// runtime destroys): another sandbox of the same gateway may use the same names now.
		if err := unplumb("", &rec); err != nil {
			errs = append(errs, fmt.Errorf("vpcnat: GC of container %s (pod %s/%s): %w", rec.ContainerID, rec.Namespace, rec.Name, err))
			continue
		}
		if err := store.Delete(rec.PodUID, rec.ContainerID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
