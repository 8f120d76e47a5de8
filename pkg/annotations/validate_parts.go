package annotations

import (
	"encoding/binary"
	"reflect"
	"slices"
)

// partsValidation is what a DesiredDecoder knows of the last parts annotation it validated, so
// that the next one, when only DNAT and SNAT parts changed, is validated in the time of the
// changed parts: the rules of each new part are checked against the same head and FIPs (the
// rule validator as the whole validation left it), and the uniqueness of every DNAT's
// EIP:port/protocol and every SNAT's internal CIDR across the lists is kept in two sets, from
// which the removed parts' keys are taken and the new parts' added. Anything else (the head
// other than its generation, a FIP part, a limit, a rule that fails, a duplicate) is decided by
// the whole validation, which also words the errors.
type partsValidation struct {
	head     Desired // the head of the state validated, generation 0, without rules
	fipParts []string
	rv       *ruleValidator
	dnats    map[uint64]struct{} // dnatKeyOf of every DNAT rule
	snats    map[uint64]struct{} // snatKeyOf of every SNAT rule
}

// headOf is d without its generation and rules: what must be unchanged for the rules of the
// unchanged parts to stay valid.
// It is a deep copy: the daemon sets the replica MACs in the state it converges.
func headOf(d *Desired) Desired {
	h := *d
	h.Generation, h.FloatingIPs, h.DNATs, h.SNATs = 0, nil, nil, nil
	h.Subnets = slices.Clone(d.Subnets)
	for i := range h.Subnets {
		h.Subnets[i].Addresses = slices.Clone(h.Subnets[i].Addresses)
	}
	h.EIPs, h.Routes = slices.Clone(d.EIPs), slices.Clone(d.Routes)
	return h
}

// dnatKeyOf packs the rule's EIP, external port and protocol (the rule is valid).
func dnatKeyOf(r *DNAT) uint64 {
	a, _ := ParseIPv4(r.EIP, nil)
	b := a.As4()
	k := uint64(binary.BigEndian.Uint32(b[:]))<<32 | uint64(r.ExternalPort)<<8
	if r.Protocol == ProtocolUDP {
		k |= 1
	}
	return k
}

// snatKeyOf packs the rule's internal CIDR (the rule is valid).
func snatKeyOf(r *SNAT) uint64 {
	p, _ := ParseIPv4Prefix(r.InternalCIDR, nil)
	b := p.Addr().As4()
	return uint64(binary.BigEndian.Uint32(b[:]))<<8 | uint64(p.Bits())
}

// keys returns the part's rule keys, computed once.
func (p *decodedPart) ruleKeys() []uint64 {
	if p.keys == nil {
		for i := range p.dnats {
			p.keys = append(p.keys, dnatKeyOf(&p.dnats[i]))
		}
		for i := range p.snats {
			p.keys = append(p.keys, snatKeyOf(&p.snats[i]))
		}
	}
	return p.keys
}

// newPartsValidation records a state that passed the whole validation, with rv as it left it.
func newPartsValidation(d *Desired, env *envelope, parts map[partKey]*decodedPart, rv *ruleValidator) *partsValidation {
	pv := &partsValidation{head: headOf(d), fipParts: env.FloatingIPs, rv: rv,
		dnats: make(map[uint64]struct{}, len(d.DNATs)), snats: make(map[uint64]struct{}, len(d.SNATs))}
	for key, p := range parts {
		set := pv.set(key.kind)
		for _, k := range p.ruleKeys() {
			set[k] = struct{}{}
		}
	}
	return pv
}

func (pv *partsValidation) set(k partKind) map[uint64]struct{} {
	switch k {
	case kindDNAT:
		return pv.dnats
	case kindSNAT:
		return pv.snats
	}
	return nil
}

// validChanged says whether d, assembled from parts, is valid, knowing that prev, the parts of
// the state pv describes, were: true only when it can tell from the changed parts alone. A
// false leaves pv unusable (the caller validates all and starts anew).
func (pv *partsValidation) validChanged(d *Desired, env *envelope, prev, parts map[partKey]*decodedPart) bool {
	if d.Generation < 0 || len(d.DNATs) > MaxDNATs || len(d.SNATs) > MaxSNATs ||
		len(parts) != len(env.FloatingIPs)+len(env.DNATs)+len(env.SNATs) || // a part repeated
		!slices.Equal(env.FloatingIPs, pv.fipParts) {
		return false
	}
	if h := headOf(d); !reflect.DeepEqual(&h, &pv.head) {
		return false
	}
	var added []partKey
	for key, p := range parts {
		if prev[key] != nil {
			continue
		}
		var errs int
		switch key.kind {
		case kindDNAT:
			errs = len(pv.rv.dnats(p.dnats, nil))
		case kindSNAT:
			errs = len(pv.rv.snats(p.snats, nil))
		default:
			return false
		}
		if errs > 0 {
			return false
		}
		added = append(added, key)
	}
	for key, p := range prev {
		if parts[key] == nil {
			set := pv.set(key.kind)
			for _, k := range p.ruleKeys() {
				delete(set, k)
			}
		}
	}
	for _, key := range added {
		set := pv.set(key.kind)
		for _, k := range parts[key].ruleKeys() {
			if _, dup := set[k]; dup {
				return false
			}
			set[k] = struct{}{}
		}
	}
	return true
}
