package annotations

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"sync"
)

// The parts encoding of the desired annotation: the desired state without its FIP, DNAT and
// SNAT lists (the head) and each of those lists cut into parts of about two hundred rules, every
// piece compressed on its own (raw DEFLATE, base64). One rule edit changes one part (two when
// it moves a cut), so a daemon that remembers the previous annotation's parts (DesiredDecoder)
// inflates and decodes only the head and the changed part: at 10 000 rules, ~1 MB of JSON
// decoded strictly took ~15 ms per change, the parts that changed take well under 1 ms.
//
// Cuts are content-defined: a part ends after a rule whose canonical JSON hashes to a multiple
// of partModulus (once it holds partMin rules) or when it holds partMax, so inserting or
// deleting a rule moves no cut elsewhere in the list.
const encodingParts = "deflate-parts"

// EncodingParts names the parts encoding in Applied.Encodings: a daemon that lists it reads
// it, so the controller may write it (an older daemon refuses an encoding it does not know).
const EncodingParts = encodingParts

const (
	partMin     = 64
	partModulus = 128
	partMax     = 1024
)

// partsLevel: the parts are small (a few KB of JSON each) and written once per edit, so the
// smallest output is worth the controller's CPU: the API server's time to store and send a pod
// grows with its annotations' size (~0.1 ms per KB here).
const partsLevel = flate.BestCompression

// EncodeDesiredParts is the value of the DesiredKey annotation for d in the parts encoding: its
// plain JSON when small (as EncodeDesired), else the parts envelope. Write it only to a pod whose
// daemon lists EncodingParts in its applied annotation; EncodeDesired is what every daemon reads.
func EncodeDesiredParts(d *Desired) (string, error) {
	raw, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("encoding desired state: %w", err)
	}
	if len(raw) <= compressThreshold {
		return string(raw), nil
	}
	head := *d
	head.FloatingIPs, head.DNATs, head.SNATs = nil, nil, nil
	env := envelope{Version: Version, Generation: d.Generation, Encoding: encodingParts}
	zw, err := flate.NewWriter(nil, partsLevel)
	if err != nil {
		return "", err
	}
	compress := func(v any) (string, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("encoding desired state: %w", err)
		}
		return compressPart(zw, b)
	}
	if env.Head, err = compress(&head); err != nil {
		return "", err
	}
	if env.FloatingIPs, err = encodeParts(d.FloatingIPs, compress); err != nil {
		return "", err
	}
	if env.DNATs, err = encodeParts(d.DNATs, compress); err != nil {
		return "", err
	}
	if env.SNATs, err = encodeParts(d.SNATs, compress); err != nil {
		return "", err
	}
	b, err := json.Marshal(env)
	return string(b), err
}

// encodeParts cuts rules into parts (see partMin) and compresses each.
func encodeParts[T any](rules []T, compress func(any) (string, error)) ([]string, error) {
	var out []string
	start := 0
	for i := range rules {
		n := i + 1 - start
		if n < partMax && i+1 < len(rules) {
			if n < partMin {
				continue
			}
			b, err := json.Marshal(&rules[i])
			if err != nil {
				return nil, fmt.Errorf("encoding desired state: %w", err)
			}
			h := fnv.New32a()
			h.Write(b)
			if h.Sum32()%partModulus != 0 {
				continue
			}
		}
		s, err := compress(rules[start : i+1])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		start = i + 1
	}
	return out, nil
}

// compressPart is the base64 of b compressed by zw (raw DEFLATE).
func compressPart(zw *flate.Writer, b []byte) (string, error) {
	var buf bytes.Buffer
	zw.Reset(&buf)
	if _, err := zw.Write(b); err != nil {
		return "", fmt.Errorf("compressing desired state: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("compressing desired state: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// DesiredDecoder parses DesiredKey annotations like ParseDesired, and remembers the parts of the
// last annotation it decoded (parts encoding), so the next one costs only the parts that differ.
// Every annotation is still validated as a whole. Not safe for concurrent use; the daemon keeps
// one per gateway pod.
type DesiredDecoder struct {
	parts map[partKey]*decodedPart
	// valid describes the state of parts when it passed validation; nil when they did not (or
	// the last annotation was not in the parts encoding).
	valid *partsValidation
	// decoded counts the parts inflated and decoded (not reused), incremental the states
	// validated by their changed parts only, for tests.
	decoded, incremental int
}

type partKind uint8

const (
	kindFIP partKind = iota
	kindDNAT
	kindSNAT
)

var partField = [...]string{kindFIP: "floatingIpRules", kindDNAT: "dnatRules", kindSNAT: "snatRules"}

type partKey struct {
	kind partKind
	data string
}

// decodedPart is one part inflated and decoded: its rules and their canonical JSON (the part's
// array without its brackets), which the hash of the whole state is computed from.
type decodedPart struct {
	fips  []FloatingIP
	dnats []DNAT
	snats []SNAT
	canon []byte
	// keys are the rules' keys for the uniqueness checks (ruleKeys), once needed.
	keys []uint64
	// inflated is the part's JSON size, counted against maxInflated.
	inflated int
}

// Parse decodes (plain, gzip envelope or parts envelope) and validates the DesiredKey
// annotation s, and returns the state with its DesiredHash.
func (dd *DesiredDecoder) Parse(s string) (*Desired, string, error) {
	d, hash, err := dd.ParseDeferHash(s)
	if err != nil {
		return nil, "", err
	}
	return d, hash(), nil
}

// ParseDeferHash is Parse with the state's DesiredHash computed when first asked for (by the
// function returned), of the state as s holds it whatever the caller does with d meanwhile: the
// daemon converges first and hashes for its report, after the new rules are live.
func (dd *DesiredDecoder) ParseDeferHash(s string) (*Desired, func() string, error) {
	env, err := readEnvelope(s)
	if err != nil {
		return nil, nil, err
	}
	if env == nil || env.Encoding != encodingParts {
		dd.parts, dd.valid = nil, nil
		d, err := parseDesired(s, env)
		if err != nil {
			return nil, nil, err
		}
		hash, err := DesiredHash(d)
		if err != nil {
			return nil, nil, err
		}
		return d, func() string { return hash }, nil
	}
	d, hash, parts, decoded, err := dd.parseParts(env)
	if err != nil {
		return nil, nil, err
	}
	prev := dd.parts
	dd.parts = parts // only this annotation's: the next edit starts from it
	dd.decoded += decoded
	if dd.valid != nil && dd.valid.validChanged(d, env, prev, parts) {
		dd.incremental++
		return d, hash, nil
	}
	errs, rv := validateDesiredAt(d, Paths{})
	if len(errs) > 0 {
		dd.valid = nil
		return nil, nil, fmt.Errorf("annotation %s: %w", DesiredKey, errs.ToAggregate())
	}
	dd.valid = newPartsValidation(d, env, parts, rv)
	return d, hash, nil
}

// parseParts assembles the state of a parts envelope (not validated yet), reusing the decoder's
// parts, and returns the parts of this one.
func (dd *DesiredDecoder) parseParts(env *envelope) (_ *Desired, _ func() string, _ map[partKey]*decodedPart, decoded int, err error) {
	if env.Data != "" {
		return nil, nil, nil, 0, fmt.Errorf("annotation %s: data: encoding %q carries its state in head and the rule lists, not data", DesiredKey, encodingParts)
	}
	headRaw, err := inflateRaw("head", env.Head, maxInflated)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	var d Desired
	if err := decodeStrict(DesiredKey+": head", headRaw, &d); err != nil {
		return nil, nil, nil, 0, err
	}
	if err := checkEnvelopeGeneration(env, d.Generation); err != nil {
		return nil, nil, nil, 0, err
	}
	if err := checkVersion(DesiredKey, d.Version); err != nil {
		return nil, nil, nil, 0, err
	}
	if d.FloatingIPs != nil || d.DNATs != nil || d.SNATs != nil {
		return nil, nil, nil, 0, fmt.Errorf("annotation %s: head: carries rules (floatingIpRules, dnatRules, snatRules belong in the envelope's parts)", DesiredKey)
	}
	budget := maxInflated - len(headRaw)
	parts := make(map[partKey]*decodedPart, len(env.FloatingIPs)+len(env.DNATs)+len(env.SNATs))
	var canon [3][][]byte
	var count [3]int
	var inOrder [3][]*decodedPart
	for kind, list := range [...][]string{kindFIP: env.FloatingIPs, kindDNAT: env.DNATs, kindSNAT: env.SNATs} {
		k := partKind(kind)
		for i, data := range list {
			key := partKey{k, data}
			p := parts[key] // the same part twice in one annotation: decoded once
			if p == nil {
				p = dd.parts[key]
			}
			if p == nil {
				if p, err = decodePart(k, i, count[k], data, budget); err != nil {
					return nil, nil, nil, 0, err
				}
				decoded++
			}
			if budget -= p.inflated; budget < 0 {
				return nil, nil, nil, 0, fmt.Errorf("annotation %s: %s part %d: inflates to more than %d bytes in all", DesiredKey, partField[k], i, maxInflated)
			}
			parts[key] = p
			canon[k] = append(canon[k], p.canon)
			count[k] += len(p.fips) + len(p.dnats) + len(p.snats)
			inOrder[k] = append(inOrder[k], p)
		}
	}
	// The lists are new slices (the parts stay as decoded whatever the caller does with d).
	if count[kindFIP] > 0 {
		d.FloatingIPs = make([]FloatingIP, 0, count[kindFIP])
	}
	if count[kindDNAT] > 0 {
		d.DNATs = make([]DNAT, 0, count[kindDNAT])
	}
	if count[kindSNAT] > 0 {
		d.SNATs = make([]SNAT, 0, count[kindSNAT])
	}
	for _, list := range inOrder {
		for _, p := range list {
			d.FloatingIPs = append(d.FloatingIPs, p.fips...)
			d.DNATs = append(d.DNATs, p.dnats...)
			d.SNATs = append(d.SNATs, p.snats...)
		}
	}
	hash, err := deferPartsHash(&d, canon)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	return &d, hash, parts, decoded, nil
}

// decodePart inflates and strictly decodes the i-th part of a rule list, whose first rule is
// the list's rule number from (the field paths of its errors count within the part).
func decodePart(k partKind, i, from int, data string, budget int) (*decodedPart, error) {
	where := fmt.Sprintf("%s part %d (rules from %s[%d])", partField[k], i, partField[k], from)
	raw, err := inflateRaw(where, data, budget)
	if err != nil {
		return nil, err
	}
	p := &decodedPart{inflated: len(raw)}
	var n int
	key := DesiredKey + ": " + where
	switch k {
	case kindFIP:
		err = decodeStrict(key, raw, &p.fips)
		n = len(p.fips)
		p.canon, _ = json.Marshal(p.fips)
	case kindDNAT:
		err = decodeStrict(key, raw, &p.dnats)
		n = len(p.dnats)
		p.canon, _ = json.Marshal(p.dnats)
	case kindSNAT:
		err = decodeStrict(key, raw, &p.snats)
		n = len(p.snats)
		p.canon, _ = json.Marshal(p.snats)
	}
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("annotation %s: %s: Invalid value: %.40q: a part holds at least one rule", DesiredKey, where, raw)
	}
	p.canon = p.canon[1 : len(p.canon)-1]
	return p, nil
}

// inflateRaw is base64 and raw DEFLATE, bounded by limit bytes.
func inflateRaw(where, data string, limit int) ([]byte, error) {
	z, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("annotation %s: %s: invalid base64: %w", DesiredKey, where, err)
	}
	zr := flate.NewReader(bytes.NewReader(z))
	raw, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("annotation %s: %s: invalid deflate data: %w", DesiredKey, where, err)
	}
	if len(raw) > limit {
		return nil, fmt.Errorf("annotation %s: %s: inflates to more than %d bytes in all", DesiredKey, where, maxInflated)
	}
	return raw, nil
}

// partsHash is DesiredHash of the state whose head is d (rule lists as assembled) and whose
// rule lists' canonical JSON is canon, part by part, without encoding the rules again: the
// canonical JSON of a Desired is its fields before the rule lists, the lists, and the fields
// after them (TestPartsHashIsDesiredHash holds this to json.Marshal).
func partsHash(d *Desired, canon [3][][]byte) (string, error) {
	hash, err := deferPartsHash(d, canon)
	if err != nil {
		return "", err
	}
	return hash(), nil
}

// deferPartsHash is partsHash in two steps: d's fields are encoded now (the caller may change
// d afterwards), the SHA-256 of the ~1 MB of JSON at 10 000 rules is computed by the function
// returned, once, when first asked.
func deferPartsHash(d *Desired, canon [3][][]byte) (func() string, error) {
	before, err := json.Marshal(desiredBeforeRules{Version: d.Version, Gateway: d.Gateway, Generation: d.Generation,
		External: d.External, Subnets: d.Subnets, EIPs: d.EIPs})
	if err != nil {
		return nil, fmt.Errorf("hashing desired state: %w", err)
	}
	after, err := json.Marshal(desiredAfterRules{Routes: d.Routes, Replicas: d.Replicas, Dataplane: d.Dataplane})
	if err != nil {
		return nil, fmt.Errorf("hashing desired state: %w", err)
	}
	return sync.OnceValue(func() string {
		h := sha256.New()
		h.Write(before[:len(before)-1]) // without its closing brace
		for k, parts := range canon {
			if len(parts) == 0 {
				continue
			}
			fmt.Fprintf(h, `,"%s":[`, partField[k])
			for i, p := range parts {
				if i > 0 {
					h.Write([]byte{','})
				}
				h.Write(p)
			}
			h.Write([]byte{']'})
		}
		if len(after) > 2 { // not "{}"
			h.Write([]byte{','})
			h.Write(after[1:])
		} else {
			h.Write([]byte{'}'})
		}
		return hex.EncodeToString(h.Sum(nil))
	}), nil
}

// desiredBeforeRules and desiredAfterRules are Desired's fields before and after its rule lists,
// with the same JSON names and options.
type desiredBeforeRules struct {
	Version    string      `json:"version"`
	Gateway    string      `json:"gateway"`
	Generation int64       `json:"generation"`
	External   ExternalNIC `json:"external"`
	Subnets    []SubnetNIC `json:"subnets"`
	EIPs       []EIP       `json:"eips,omitempty"`
}

type desiredAfterRules struct {
	Routes    []Route `json:"routes,omitempty"`
	Replicas  int     `json:"replicas,omitempty"`
	Dataplane string  `json:"dataplane,omitempty"`
}
