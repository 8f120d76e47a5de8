package annotations

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Fuzz targets of the annotation codec. Seeds are in testdata/fuzz/<FuzzName>/ (the seed's and
// the validator tests' documents, plain and in the gzip envelope, and hand-edited variants); the
// f.Add seeds below are the ones built from this package's fixtures. Run one with
//
//	go test -run '^$' -fuzz '^FuzzParseDesired$' -fuzztime 1m ./pkg/annotations
//
// or all of them with hack/fuzz.sh.

// mustMarshal is Marshal for fixtures.
func mustMarshal(tb testing.TB, v any) string {
	tb.Helper()
	s, err := Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// withUnknownField adds an unknown top-level field to a JSON object document, or returns "" when
// doc is not one.
func withUnknownField(doc string) string {
	t := strings.TrimLeft(doc, " \t\r\n")
	if !strings.HasPrefix(t, "{") {
		return ""
	}
	return `{"vpcnatFuzzUnknown":1,` + strings.TrimPrefix(t[1:], " ")
}

// FuzzParseDesired: ParseDesired never panics; whatever it accepts is valid, re-encodes
// (EncodeDesired, plain or compressed) to a document that decodes to the same value with the
// same hash, and stops being accepted when an unknown field is added (strictness).
func FuzzParseDesired(f *testing.F) {
	f.Add(mustMarshal(f, goodDesired()))
	big, err := EncodeDesired(bigDesired(400)) // over the compression threshold: the envelope
	if err != nil {
		f.Fatal(err)
	}
	f.Add(big)
	parts, err := EncodeDesiredParts(bigDesired(400))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(parts)
	replicated := goodDesired()
	replicated.Replicas = 3
	f.Add(mustMarshal(f, replicated))
	// A decoder that remembers the parts of the seed's big document must answer exactly as
	// ParseDesired does (its reused parts and its validation of changed parts only included).
	// (Primed once: inflating under the fuzzer's instrumentation is slow.)
	var seed DesiredDecoder
	if _, _, err := seed.Parse(parts); err != nil {
		f.Fatal(err)
	}
	primed := func(*testing.T) *DesiredDecoder { return seed.clone() }
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDesired(s)
		dd := primed(t)
		d2, hash, err2 := dd.Parse(s)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("ParseDesired says %v, a primed DesiredDecoder %v", err, err2)
		}
		if err != nil {
			if d != nil {
				t.Fatalf("ParseDesired returned a document and an error: %v", err)
			}
			return
		}
		if want, _ := DesiredHash(d); hash != want || !reflect.DeepEqual(d, d2) {
			t.Fatalf("a primed DesiredDecoder returned another state or hash than ParseDesired")
		}
		if errs := ValidateDesired(d); len(errs) > 0 {
			t.Fatalf("accepted an invalid document: %v", errs.ToAggregate())
		}
		checkDesiredRoundTrip(t, d, false)
		// The envelope's generation is read without inflating (the daemon reports which
		// generation it refused): it must be the content's.
		var env envelope
		if json.Unmarshal([]byte(s), &env) == nil && env.Encoding != "" && env.Generation != d.Generation {
			t.Fatalf("accepted an envelope of generation %d holding generation %d", env.Generation, d.Generation)
		}
		if u := withUnknownField(s); u != "" {
			if _, err := ParseDesired(u); err == nil || !strings.Contains(err.Error(), "vpcnatFuzzUnknown") {
				t.Fatalf("an unknown field was not refused naming it: %v\n%s", err, u)
			}
		}
	})
}

// checkDesiredRoundTrip: d (valid) encodes, plainly and through EncodeDesired, to documents that
// parse back to d. exact asks for reflect.DeepEqual; otherwise the canonical JSON must be equal
// (a decoded "addresses":[] is an empty slice, which encodes as nothing and decodes as nil).
func checkDesiredRoundTrip(t *testing.T, d *Desired, exact bool) {
	t.Helper()
	want, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	wantHash, err := DesiredHash(d)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := EncodeDesired(d)
	if err != nil {
		t.Fatalf("EncodeDesired of an accepted document: %v", err)
	}
	parts, err := EncodeDesiredParts(d)
	if err != nil {
		t.Fatalf("EncodeDesiredParts of an accepted document: %v", err)
	}
	for name, doc := range map[string]string{"Marshal": want, "EncodeDesired": enc, "EncodeDesiredParts": parts} {
		d2, err := ParseDesired(doc)
		if err != nil {
			t.Fatalf("%s of an accepted document is refused: %v\n%.300s", name, err, doc)
		}
		var dd DesiredDecoder
		if _, h, err := dd.Parse(doc); err != nil || h != wantHash {
			t.Fatalf("%s: DesiredDecoder: hash %s, error %v; want hash %s", name, h, err, wantHash)
		}
		if exact && !reflect.DeepEqual(d, d2) {
			t.Fatalf("%s round trip changed the document:\n%+v\n%+v", name, d, d2)
		}
		got, _ := Marshal(d2)
		if got != want {
			t.Fatalf("%s round trip changed the document:\n%s\n%s", name, want, got)
		}
		if h, _ := DesiredHash(d2); h != wantHash {
			t.Fatalf("%s round trip changed the hash", name)
		}
	}
	if len(want) > compressThreshold != strings.Contains(enc, `"encoding":"gzip"`) {
		t.Fatalf("EncodeDesired compressed=%v for %d bytes of JSON (threshold %d)", !(len(want) > compressThreshold), len(want), compressThreshold)
	}
}

// FuzzDesiredRoundTrip builds documents from a valid one with fuzzed values (rule fields, the
// number of rules, enough of them to cross the compression threshold) and checks, for every one
// the validator accepts, decode(encode(x)) == x exactly, through both encodings.
func FuzzDesiredRoundTrip(f *testing.F) {
	f.Add(int64(3), "192.168.0.112", "tcp", 8888, "10.0.1.10", 80, "10.0.1.0/24", "10.0.1.254", uint16(1))
	f.Add(int64(0), "192.168.0.113", "udp", 53, "10.0.2.10", 53, "10.0.2.64/26", "10.0.2.100", uint16(300))
	f.Add(int64(1<<40), "192.168.0.112", "tcp", 65535, "203.0.113.9", 1, "0.0.0.0/0", "10.0.1.1", uint16(0))
	f.Fuzz(func(t *testing.T, gen int64, eip, proto string, port int, internal string, toPort int, cidr, nextHop string, n uint16) {
		d := goodDesired()
		d.Generation = gen
		d.DNATs = append(d.DNATs, DNAT{EIP: eip, Protocol: proto, ExternalPort: port, InternalIP: internal, InternalPort: toPort})
		// n more forwards on the same EIP (ports counting down from 65535, so they never
		// collide with the seed rules' 8888 below 400 of them), to reach the gzip envelope.
		for i := range int(n % 256) {
			d.DNATs = append(d.DNATs, DNAT{EIP: "192.168.0.113", Protocol: "tcp", ExternalPort: 65535 - i,
				InternalIP: "10.0.1.20", InternalPort: 1 + i})
		}
		d.SNATs = append(d.SNATs, SNAT{EIP: eip, InternalCIDR: cidr})
		d.Routes = append(d.Routes, Route{Policy: PolicySrc, CIDR: cidr, NextHopIP: nextHop})
		if len(ValidateDesired(d)) > 0 {
			// Then parsing its encoding must refuse it too: the codec validates.
			if s, err := EncodeDesired(d); err == nil {
				if _, err := ParseDesired(s); err == nil {
					t.Fatalf("an invalid document parses:\n%.300s", s)
				}
			}
			return
		}
		checkDesiredRoundTrip(t, d, true)
	})
}

// FuzzParseNICPlan: ParseNICPlan never panics; what it accepts is valid, re-encodes to the same
// canonical document, and refuses an added unknown field.
func FuzzParseNICPlan(f *testing.F) {
	g := goodDesired()
	f.Add(mustMarshal(f, &NICPlan{Version: Version, Gateway: g.Gateway, External: g.External, Subnets: g.Subnets}))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseNICPlan(s)
		if err != nil {
			return
		}
		if errs := ValidateNICPlan(p); len(errs) > 0 {
			t.Fatalf("accepted an invalid plan: %v", errs.ToAggregate())
		}
		want := mustMarshal(t, p)
		p2, err := ParseNICPlan(want)
		if err != nil {
			t.Fatalf("the encoding of an accepted plan is refused: %v\n%s", err, want)
		}
		if got := mustMarshal(t, p2); got != want {
			t.Fatalf("round trip changed the plan:\n%s\n%s", want, got)
		}
		if u := withUnknownField(s); u != "" {
			if _, err := ParseNICPlan(u); err == nil {
				t.Fatalf("an unknown field was not refused:\n%s", u)
			}
		}
	})
}

// FuzzParseApplied: ParseApplied never panics; what it accepts re-encodes to a document that
// decodes to the same value, and an added unknown field is refused.
func FuzzParseApplied(f *testing.F) {
	f.Add(mustMarshal(f, &Applied{Version: Version, Generation: 3, Hash: strings.Repeat("ab", 32),
		Time: "2026-11-26T03:00:00Z", RuleErrors: map[string]string{"dnat/192.168.0.112/tcp/8888": "no such EIP"}}))
	f.Add(`{"version":"v1","generation":0,"hash":"","time":"","error":"netns gone"}`)
	f.Add(mustMarshal(f, &Applied{Version: Version, Generation: 3, Hash: "x", Time: "2026-11-26T03:00:00Z",
		Conflicts: []AddressConflict{{Address: "192.168.0.111", Interface: "net1", MAC: "02:42:c0:a8:00:6f",
			Since: "2026-11-26T02:59:58Z"}}}))
	f.Add(mustMarshal(f, &Applied{Version: Version, Generation: 3, Hash: "x", Time: "2026-11-26T03:00:00Z", Role: RoleStandby}))
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseApplied(s)
		if err != nil {
			return
		}
		want := mustMarshal(t, a)
		a2, err := ParseApplied(want)
		if err != nil {
			t.Fatalf("the encoding of an accepted report is refused: %v\n%s", err, want)
		}
		if got := mustMarshal(t, a2); got != want {
			t.Fatalf("round trip changed the report:\n%s\n%s", want, got)
		}
		if u := withUnknownField(s); u != "" {
			if _, err := ParseApplied(u); err == nil {
				t.Fatalf("an unknown field was not refused:\n%s", u)
			}
		}
	})
}

// TestFuzzCorpusIsMeaningful: the checked-in seeds are what they say: each target's directory has
// seeds, and FuzzParseDesired's include accepted documents, one of them compressed, and refused
// ones, so a fuzz run starts from both sides of the validator.
func TestFuzzCorpusIsMeaningful(t *testing.T) {
	seeds := readCorpus(t, "FuzzParseDesired")
	var ok, refused, compressed, parts, partsRefused int
	for _, s := range seeds {
		isParts := strings.Contains(s, `"encoding":"deflate-parts"`)
		if _, err := ParseDesired(s); err != nil {
			refused++
			if isParts {
				partsRefused++
			}
			continue
		}
		ok++
		if strings.Contains(s, `"encoding"`) {
			compressed++
		}
		if isParts {
			parts++
		}
	}
	if ok < 2 || refused < 2 || compressed < 1 || parts < 1 || partsRefused < 1 {
		t.Errorf("FuzzParseDesired corpus: %d accepted (%d compressed, %d in parts), %d refused (%d in parts); want >= 2, >= 1, >= 1, >= 2, >= 1",
			ok, compressed, parts, refused, partsRefused)
	}
	for _, name := range []string{"FuzzParseNICPlan", "FuzzParseApplied", "FuzzDesiredRoundTrip", "FuzzDesiredDecoderEdits"} {
		if len(readCorpus(t, name)) == 0 {
			t.Errorf("%s: no checked-in seeds", name)
		}
	}
}

// readCorpus returns the first string value of every file of testdata/fuzz/<name>.
func readCorpus(t *testing.T, name string) []string {
	t.Helper()
	files, err := corpusFiles("testdata/fuzz/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range files {
		lines := bytes.Split(b, []byte("\n"))
		if len(lines) < 2 || string(lines[0]) != "go test fuzz v1" {
			t.Fatalf("%s: not a go test fuzz v1 file", name)
		}
		v := string(lines[1])
		if !strings.HasPrefix(v, "string(") {
			out = append(out, v)
			continue
		}
		var s string
		if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(v, "string("), ")")), &s); err != nil {
			// Go quotes with strconv.Quote, which is JSON for the documents we write; a
			// seed using Go-only escapes is read by the fuzz engine, just not here.
			t.Logf("%s: seed not JSON-quoted: %v", name, err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// corpusFiles reads every file of dir.
func corpusFiles(dir string) ([][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the seed corpus: %w", err)
	}
	var out [][]byte
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading the seed corpus: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}
