package annotations

import (
	"compress/flate"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fullDesired is bigDesired(n) with every kind of rule and every optional field set.
func fullDesired(n int) *Desired {
	d := bigDesired(n)
	for i := range 40 {
		d.FloatingIPs = append(d.FloatingIPs, FloatingIP{EIP: d.EIPs[199-i].EipCIDR[:strings.IndexByte(d.EIPs[199-i].EipCIDR, '/')],
			InternalIP: "10.0.200." + itoa(10+i)})
	}
	for i := range n / 10 {
		d.SNATs = append(d.SNATs, SNAT{EIP: "192.168.0.1", InternalCIDR: "10." + itoa(1+i/256) + "." + itoa(i%256) + ".0/24"})
	}
	d.Routes = []Route{{Policy: PolicyDst, CIDR: "172.16.0.0/16", NextHopIP: "10.0.0.254"}}
	d.Replicas, d.Dataplane = 2, DataplaneNFTables
	// bigDesired's FIP EIPs must carry no DNAT: move those DNATs to the first EIP.
	for i := range d.DNATs {
		for _, f := range d.FloatingIPs {
			if d.DNATs[i].EIP == f.EIP {
				d.DNATs[i].EIP, d.DNATs[i].ExternalPort = "192.168.0.1", 20000+i
			}
		}
	}
	return d
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestEncodeDesiredParts: the parts encoding carries the same state and hash as the gzip one,
// small states stay plain JSON, and 10 000 rules fit with room to spare.
func TestEncodeDesiredParts(t *testing.T) {
	small := goodDesired()
	s, err := EncodeDesiredParts(small)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s, `"encoding"`) {
		t.Errorf("a small desired state was compressed: %.80s", s)
	}
	for _, n := range []int{400, 10000} {
		d := fullDesired(n)
		if errs := ValidateDesired(d); len(errs) > 0 {
			t.Fatalf("fixture of %d rules is invalid: %v", n, errs.ToAggregate())
		}
		s, err := EncodeDesiredParts(d)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(s, `"encoding":"deflate-parts"`) || len(s) > MaxTotalSize/2 {
			t.Errorf("%d rules encode to %d bytes (want the parts envelope, under %d)", n, len(s), MaxTotalSize/2)
		}
		gz, _ := EncodeDesired(d)
		t.Logf("%d rules: %d bytes in parts, %d in gzip", n, len(s), len(gz))
		got, err := ParseDesired(s)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, d) {
			t.Errorf("%d rules: the parts round trip changed the desired state", n)
		}
		var dd DesiredDecoder
		got, hash, err := dd.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := DesiredHash(d); hash != want || !reflect.DeepEqual(got, d) {
			t.Errorf("%d rules: the decoder's hash %s, want DesiredHash %s", n, hash, want)
		}
	}
}

// TestPartsHashIsDesiredHash: the hash assembled from the parts is DesiredHash for states with
// and without each optional field and rule list.
func TestPartsHashIsDesiredHash(t *testing.T) {
	base := fullDesired(400)
	for name, edit := range map[string]func(d *Desired){
		"everything":         func(*Desired) {},
		"no FIP":             func(d *Desired) { d.FloatingIPs = nil },
		"no DNAT":            func(d *Desired) { d.DNATs = nil; d.SNATs = append(d.SNATs, d.SNATs...)[:len(d.SNATs)] },
		"no SNAT":            func(d *Desired) { d.SNATs = nil },
		"no routes":          func(d *Desired) { d.Routes = nil },
		"no optional fields": func(d *Desired) { d.Routes, d.Replicas, d.Dataplane = nil, 0, "" },
		"dataplane only":     func(d *Desired) { d.Routes, d.Replicas = nil, 0 },
		"no subnets no EIPs": func(d *Desired) { d.Subnets, d.EIPs = nil, nil },
	} {
		d := *base
		edit(&d)
		var canon [3][][]byte
		for k, v := range []any{d.FloatingIPs, d.DNATs, d.SNATs} {
			b, _ := json.Marshal(v)
			if string(b) != "null" {
				canon[k] = [][]byte{b[1 : len(b)-1]}
			}
		}
		got, err := partsHash(&d, canon)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := DesiredHash(&d); got != want {
			t.Errorf("%s: parts hash %s, DesiredHash %s", name, got, want)
		}
	}
	// Every field of Desired is in one of the three places, in order, with the same JSON name.
	var names []string
	for _, v := range []any{desiredBeforeRules{}, struct {
		F []FloatingIP `json:"floatingIpRules,omitempty"`
		D []DNAT       `json:"dnatRules,omitempty"`
		S []SNAT       `json:"snatRules,omitempty"`
	}{}, desiredAfterRules{}} {
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			names = append(names, rt.Field(i).Name+" "+string(rt.Field(i).Tag))
		}
	}
	var want []string
	rt := reflect.TypeOf(Desired{})
	for i := range rt.NumField() {
		f := rt.Field(i)
		n := f.Name
		switch n {
		case "FloatingIPs":
			n = "F"
		case "DNATs":
			n = "D"
		case "SNATs":
			n = "S"
		}
		want = append(want, n+" "+string(f.Tag))
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("Desired's fields changed: the parts hash needs them as\n%v\nhas\n%v", want, names)
	}
}

// TestDesiredDecoderReusesParts: after one rule edit the decoder decodes only the parts that
// changed, and returns what a fresh parse returns.
func TestDesiredDecoderReusesParts(t *testing.T) {
	d := fullDesired(10000)
	s1, err := EncodeDesiredParts(d)
	if err != nil {
		t.Fatal(err)
	}
	var dd DesiredDecoder
	if _, _, err := dd.Parse(s1); err != nil {
		t.Fatal(err)
	}
	first := dd.decoded
	for name, edit := range map[string]func(d *Desired){
		"DNAT port": func(d *Desired) { d.DNATs[5000].ExternalPort = 30000 },
		"DNAT added": func(d *Desired) {
			d.DNATs = append(d.DNATs[:3000:3000], append([]DNAT{{EIP: "192.168.0.1", Protocol: "udp", ExternalPort: 9,
				InternalIP: "10.0.9.9", InternalPort: 9}}, d.DNATs[3000:]...)...)
		},
		"SNAT removed": func(d *Desired) { d.SNATs = append(d.SNATs[:10:10], d.SNATs[11:]...) },
		"generation":   func(d *Desired) { d.Generation++ },
	} {
		e := *d
		e.DNATs = append([]DNAT(nil), d.DNATs...)
		e.SNATs = append([]SNAT(nil), d.SNATs...)
		edit(&e)
		s2, err := EncodeDesiredParts(&e)
		if err != nil {
			t.Fatal(err)
		}
		before := dd.decoded
		got, hash, err := dd.Parse(s2)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := dd.decoded - before; n > 2 {
			t.Errorf("%s: %d parts decoded again of %d (want at most 2)", name, n, first)
		}
		if want, _ := DesiredHash(&e); hash != want || !reflect.DeepEqual(got, &e) {
			t.Errorf("%s: the decoder's result differs from the state encoded", name)
		}
		if _, _, err := dd.Parse(s1); err != nil { // back, for the next edit
			t.Fatal(err)
		}
	}
}

// TestPartsRefuses: a bad parts envelope is refused naming what is wrong, the parts are strict
// JSON, and the assembled state is validated as a whole (field paths over the whole list).
func TestPartsRefuses(t *testing.T) {
	d := fullDesired(400)
	good, err := EncodeDesiredParts(d)
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal([]byte(good), &env); err != nil {
		t.Fatal(err)
	}
	// The rules of the first DNAT part: a rule of the second is refused by its index in the list.
	raw0, err := inflateRaw("", env.DNATs[0], maxInflated)
	if err != nil {
		t.Fatal(err)
	}
	var part0 []DNAT
	if err := json.Unmarshal(raw0, &part0); err != nil {
		t.Fatal(err)
	}
	zw, _ := flate.NewWriter(nil, flate.BestSpeed)
	deflate := func(s string) string {
		out, err := compressPart(zw, []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	with := func(edit func(e *envelope)) string {
		e := env
		e.DNATs = append([]string(nil), env.DNATs...)
		edit(&e)
		b, _ := json.Marshal(e)
		return string(b)
	}
	head := *d
	head.FloatingIPs, head.DNATs, head.SNATs = nil, nil, nil
	headJSON, _ := json.Marshal(&head)
	bomb := "[" + strings.Repeat(" ", maxInflated) + "]"
	for name, c := range map[string]struct{ doc, want string }{
		"bad base64":      {with(func(e *envelope) { e.DNATs[1] = "%%%" }), "dnatRules part 1 (rules from dnatRules[" /* its first rule's index */},
		"not deflate":     {with(func(e *envelope) { e.DNATs[1] = base64.StdEncoding.EncodeToString([]byte("hello")) }), "invalid deflate data"},
		"unknown field":   {with(func(e *envelope) { e.DNATs[0] = deflate(`[{"eip":"192.168.0.1","prot":"tcp"}]`) }), `dnatRules part 0 (rules from dnatRules[0]): unknown field "[0].prot"`},
		"duplicate field": {with(func(e *envelope) { e.DNATs[0] = deflate(`[{"eip":"192.168.0.1","eip":"192.168.0.2"}]`) }), `dnatRules part 0 (rules from dnatRules[0]): duplicate field "[0].eip"`},
		"wrong type":      {with(func(e *envelope) { e.DNATs[0] = deflate(`[{"eip":"192.168.0.1","externalPort":"80"}]`) }), "externalPort"},
		"empty part":      {with(func(e *envelope) { e.DNATs[0] = deflate(`[]`) }), "dnatRules part 0 (rules from dnatRules[0]): Invalid value"},
		"not a list":      {with(func(e *envelope) { e.SNATs = []string{deflate(`{}`)} }), "snatRules part 0 (rules from snatRules[0]): invalid JSON"},
		"invalid rule": {with(func(e *envelope) {
			e.DNATs[1] = deflate(`[{"eip":"192.168.0.1","protocol":"sctp","externalPort":80,"internalIp":"10.0.0.9","internalPort":80}]`)
		}), fmt.Sprintf("dnatRules[%d].protocol: Unsupported value", len(part0))},
		"head with rules":  {with(func(e *envelope) { e.Head = deflate(`{"version":"v1","gateway":"ngw","generation":7,"dnatRules":[]}`) }), "head: carries rules"},
		"head unknown":     {with(func(e *envelope) { e.Head = deflate(`{"version":"v1","gateway":"ngw","generation":7,"gatway":"x"}`) }), `head: unknown field "gatway"`},
		"head generation":  {with(func(e *envelope) { e.Generation = 8 }), "generation: the envelope's 8 differs from its content's 7"},
		"head version":     {with(func(e *envelope) { e.Head = deflate(strings.Replace(string(headJSON), `"v1"`, `"v2"`, 1)) }), `version "v2"`},
		"data as well":     {with(func(e *envelope) { e.Data = "AAAA" }), "not data"},
		"gzip with parts":  {with(func(e *envelope) { e.Encoding = "gzip" }), "data only"},
		"deflate bomb":     {with(func(e *envelope) { e.DNATs[0] = deflate(bomb) }), "inflates to more than"},
		"unknown envelope": {strings.Replace(good, `"encoding"`, `"extra":1,"encoding"`, 1), `unknown field "extra"`},
		"unknown encoding": {with(func(e *envelope) { e.Encoding = "zstd" }), `encoding "zstd"`},
		"wrong gateway EIP": {with(func(e *envelope) {
			e.FloatingIPs = []string{deflate(`[{"eip":"203.0.113.1","internalIp":"10.0.0.5"}]`)}
		}), "floatingIpRules[0].eip"},
	} {
		_, err := ParseDesired(c.doc)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), DesiredKey) {
			t.Errorf("%s: error %v, want one naming %s and %q", name, err, DesiredKey, c.want)
		}
		// A decoder that knows the good document's parts refuses it the same way.
		var dd DesiredDecoder
		if _, _, err := dd.Parse(good); err != nil {
			t.Fatal(err)
		}
		if _, _, err2 := dd.Parse(c.doc); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("%s: the decoder with the good parts says %v, ParseDesired %v", name, err2, err)
		}
	}
}

// BenchmarkParseDesiredParts10k is the daemon's side of one rule edit at 10 000 rules in the
// parts encoding: the decoder knows the previous annotation, the edit moves one DNAT's port.
func BenchmarkParseDesiredParts10k(b *testing.B) {
	d := fullDesired(10000)
	var docs [2]string
	for i := range docs {
		d.DNATs[0].ExternalPort = 30000 + i
		s, err := EncodeDesiredParts(d)
		if err != nil {
			b.Fatal(err)
		}
		docs[i] = s
	}
	var dd DesiredDecoder
	if _, _, err := dd.Parse(docs[0]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, _, err := dd.Parse(docs[i%2]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseDesiredGzip10k is the same edit in the gzip encoding, hash included.
func BenchmarkParseDesiredGzip10k(b *testing.B) {
	d := fullDesired(10000)
	s, err := EncodeDesired(d)
	if err != nil {
		b.Fatal(err)
	}
	var dd DesiredDecoder
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := dd.Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDesiredDecoderEdits edits a DNAT or SNAT of a valid parts-encoded state (a change, an
// insertion, a removal: fuzzed values, so duplicates and invalid rules too) and checks that a
// decoder that validated the state before answers the edited one exactly as a fresh parse does:
// the validation of the changed parts alone is the whole validation's.
func FuzzDesiredDecoderEdits(f *testing.F) {
	f.Add(uint8(0), uint16(5), "192.168.0.1", "tcp", 30000, "10.0.1.5", "10.9.9.0/24", int64(8))
	f.Add(uint8(1), uint16(100), "192.168.0.2", "udp", 10000, "10.0.1.5", "10.1.1.0/24", int64(8)) // a duplicate
	f.Add(uint8(2), uint16(7), "192.168.0.1", "tcp", 0, "", "10.1.0.0/24", int64(8))
	f.Add(uint8(3), uint16(3), "203.0.113.1", "sctp", 70000, "10.0.1.0", "10.1.2.3/24", int64(-1))
	f.Add(uint8(4), uint16(999), "192.168.0.1", "tcp", 30000, "10.0.1.5", "10.1.1.0/24", int64(9))
	d := fullDesired(300)
	base, err := EncodeDesiredParts(d)
	if err != nil {
		f.Fatal(err)
	}
	// Primed once (inflating and encoding under the fuzzer's instrumentation are slow), cloned
	// for each input.
	var seed DesiredDecoder
	if _, _, err := seed.Parse(base); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, op uint8, at uint16, eip, proto string, port int, ip, cidr string, gen int64) {
		e := *d
		e.Generation = gen
		e.DNATs = slices.Clone(d.DNATs)
		e.SNATs = slices.Clone(d.SNATs)
		dn := DNAT{EIP: eip, Protocol: proto, ExternalPort: port, InternalIP: ip, InternalPort: 80}
		sn := SNAT{EIP: eip, InternalCIDR: cidr}
		switch i, j := int(at)%len(e.DNATs), int(at)%len(e.SNATs); op % 6 {
		case 0:
			e.DNATs[i] = dn
		case 1:
			e.DNATs = slices.Insert(e.DNATs, i, dn)
		case 2:
			e.DNATs = slices.Delete(e.DNATs, i, i+1)
		case 3:
			e.SNATs[j] = sn
		case 4:
			e.SNATs = slices.Insert(e.SNATs, j, sn)
		case 5:
			e.SNATs = slices.Delete(e.SNATs, j, j+1)
		}
		s, err := EncodeDesiredParts(&e)
		if err != nil {
			t.Fatal(err)
		}
		dd := seed.clone()
		got, hash, err := dd.Parse(s)
		want, werr := ParseDesired(s)
		if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Fatalf("after a valid state the decoder says %v, a fresh parse %v", err, werr)
		}
		if err != nil {
			return
		}
		if h, _ := DesiredHash(&e); hash != h || !reflect.DeepEqual(got, want) {
			t.Fatal("the decoder's state or hash differs from a fresh parse's")
		}
	})
}

// clone is a decoder that knows what dd knows, changed independently of it (the decoded parts
// are shared: they never change once decoded).
func (dd *DesiredDecoder) clone() *DesiredDecoder {
	c := &DesiredDecoder{parts: maps.Clone(dd.parts)}
	if v := dd.valid; v != nil {
		c.valid = &partsValidation{head: v.head, fipParts: v.fipParts, rv: v.rv, dnats: maps.Clone(v.dnats), snats: maps.Clone(v.snats)}
	}
	return c
}
