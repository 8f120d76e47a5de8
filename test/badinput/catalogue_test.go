// Package badinput runs the bad-input catalogue (catalogue.tsv, one line per case) through the
// real entry points of vpcnat: CRs through a real kube-apiserver (CRD schema and CEL) and the
// controller; pod annotations through the daemon in node mode on that API server (the desired
// state) and through the CNI chain (the NIC plan, which the plugin reads from runtimeConfig);
// CNI configuration and runtimeConfig through libcni with the real chain (upstream bridge +
// host-local, then vpcnat); spec files through `vpcnat-daemon apply`. Every case must be refused
// with an error containing the catalogue's fragment (which names the field and the value), leave
// no state behind, and leave the layer's healthy gateway as it was.
//
// Address plan: test/topo's seed topology for the data-plane layers (192.168.0.0/24 external,
// 10.0.1.0/24 and 10.0.2.0/24 VPC subnets, 203.0.113.128/25 the primary pod network); the CR
// layer's objects use the same addresses in API objects only.
package badinput

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// Case is one line of the catalogue.
type Case struct {
	Line   int
	ID     string
	Layer  string // cr | annotation | cni | cli
	Stage  string // which part of the path must refuse it (api, controller, daemon, plugin, libcni, apply)
	Base   string // what the input modifies (per layer)
	Input  string // the rest of the input column, macros expanded
	Expect string // fragment the error must contain
}

func (c Case) String() string { return fmt.Sprintf("catalogue.tsv:%d %s", c.Line, c.ID) }

var layers = []string{"cr", "annotation", "cni", "cli"}

// repoRoot is the checkout's top directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// cataloguePath can be pointed elsewhere (BADINPUT_CATALOGUE), e.g. to show that a wrong
// expected fragment fails.
func cataloguePath() string {
	if p := os.Getenv("BADINPUT_CATALOGUE"); p != "" {
		return p
	}
	return filepath.Join(repoRoot(), "test", "badinput", "catalogue.tsv")
}

var repMacro = regexp.MustCompile(`\$\{rep:(\d+):([^}]*)\}`)

// expand replaces ${rep:N:s} by s repeated N times.
func expand(s string) string {
	return repMacro.ReplaceAllStringFunc(s, func(m string) string {
		p := repMacro.FindStringSubmatch(m)
		n, _ := strconv.Atoi(p[1])
		return strings.Repeat(p[2], n)
	})
}

// loadCatalogue parses the catalogue: tab-separated id, layer, stage, input, expect; '#' starts
// a comment line.
func loadCatalogue(path string) ([]Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Case
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			return nil, fmt.Errorf("%s:%d: %d tab-separated fields, want 5 (id, layer, stage, input, expect)", path, n, len(f))
		}
		c := Case{Line: n, ID: f[0], Layer: f[1], Stage: f[2], Expect: expand(f[4])}
		if prev, ok := seen[c.ID]; ok {
			return nil, fmt.Errorf("%s:%d: id %s already used on line %d", path, n, c.ID, prev)
		}
		seen[c.ID] = n
		if !strings.HasPrefix(c.ID, c.Layer+"-") {
			return nil, fmt.Errorf("%s:%d: id %s does not start with its layer %q", path, n, c.ID, c.Layer)
		}
		base, rest, _ := strings.Cut(f[3], " ")
		c.Base, c.Input = base, expand(rest)
		if c.Expect == "" {
			return nil, fmt.Errorf("%s:%d: %s: no expected fragment", path, n, c.ID)
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

func casesOf(t *testing.T, layer string) []Case {
	t.Helper()
	all, err := loadCatalogue(cataloguePath())
	if err != nil {
		t.Fatal(err)
	}
	var out []Case
	for _, c := range all {
		if c.Layer == layer {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s cases in the catalogue", layer)
	}
	return out
}

// TestCatalogueShape: at least 200 cases, at least 30 per layer, known layers, unique ids.
func TestCatalogueShape(t *testing.T) {
	all, err := loadCatalogue(cataloguePath())
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, c := range all {
		per[c.Layer]++
	}
	for _, l := range layers {
		if per[l] < 30 {
			t.Errorf("layer %s has %d cases, want at least 30", l, per[l])
		}
		delete(per, l)
	}
	for l, n := range per {
		t.Errorf("%d cases of unknown layer %q", n, l)
	}
	if len(all) < 200 {
		t.Errorf("%d cases, want at least 200", len(all))
	}
}

// checkError is the verdict on one case: refused, by an error containing the fragment.
func checkError(c Case, err error) error {
	if err != nil && verbose() {
		fmt.Printf("    %s: %s\n", c.ID, clipShort(err.Error()))
	}
	if err == nil {
		return fmt.Errorf("%s: accepted, want an error containing %q", c, c.Expect)
	}
	for _, frag := range strings.Split(c.Expect, " ++ ") {
		if !strings.Contains(err.Error(), frag) {
			return fmt.Errorf("%s: error does not contain %q:\n%s", c, frag, clip(err.Error()))
		}
	}
	return nil
}

// clip shortens what a 64 KiB input makes an error print.
func clip(s string) string {
	if len(s) > 2000 {
		return s[:1000] + fmt.Sprintf(" [... %d bytes ...] ", len(s)-2000) + s[len(s)-1000:]
	}
	return s
}

// TestVerdictCanFail: the verdict refuses an accepted input, and an error without the expected
// fragment (a deliberately wrong fragment of a real catalogue line).
func TestVerdictCanFail(t *testing.T) {
	c := Case{ID: "cli-x", Expect: "spec.lanIp"}
	if checkError(c, nil) == nil {
		t.Error("an accepted input passed")
	}
	if checkError(c, fmt.Errorf(`spec.dnatRules[0].eip: Invalid value: "x"`)) == nil {
		t.Error("an error without the fragment passed")
	}
	if checkError(c, fmt.Errorf(`spec.lanIp: Invalid value: "x"`)) != nil {
		t.Error("an error with the fragment failed")
	}
}

// counter prints, per layer, how many cases ran and how many were refused as expected.
type counter struct {
	layer         string
	ran, rejected int
}

func (k *counter) report(t *testing.T) {
	t.Logf("layer %s: %d cases run, %d rejected as expected", k.layer, k.ran, k.rejected)
	fmt.Printf("badinput: layer %-10s %3d cases run, %3d rejected as expected\n", k.layer, k.ran, k.rejected)
}

// --- set patches -----------------------------------------------------------------------------

// applySets changes a JSON document (decoded into any) by a JSON object of path -> value, in the
// object's order. A path is dot-separated names with [i] (index), [+] (append) or [key] (a map key
// that may contain dots); a leading '!' deletes the field or item instead.
func applySets(doc any, sets string) (any, error) {
	sets = strings.TrimSpace(sets)
	if sets == "" {
		return doc, nil
	}
	dec := json.NewDecoder(strings.NewReader(sets))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("sets %q: want a JSON object (%v)", clip(sets), err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		var val any
		if err := dec.Decode(&val); err != nil {
			return nil, fmt.Errorf("sets: value of %q: %w", key, err)
		}
		del := strings.HasPrefix(key, "!")
		segs, err := splitPath(strings.TrimPrefix(key, "!"))
		if err != nil {
			return nil, err
		}
		if doc, err = setPath(doc, segs, val, del); err != nil {
			return nil, fmt.Errorf("sets: %s: %w", key, err)
		}
	}
	return doc, nil
}

type seg struct {
	name  string
	index int // -1: a name; -2: append
}

func splitPath(p string) ([]seg, error) {
	var out []seg
	for p != "" {
		if p[0] == '[' {
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return nil, fmt.Errorf("path %q: unclosed [", p)
			}
			in := p[1:end]
			p = strings.TrimPrefix(p[end+1:], ".")
			switch i, err := strconv.Atoi(in); {
			case in == "+":
				out = append(out, seg{index: -2})
			case err == nil:
				out = append(out, seg{index: i})
			default:
				out = append(out, seg{name: in, index: -1})
			}
			continue
		}
		end := strings.IndexAny(p, ".[")
		if end < 0 {
			end = len(p)
		}
		out = append(out, seg{name: p[:end], index: -1})
		p = strings.TrimPrefix(p[end:], ".")
	}
	return out, nil
}

func setPath(cur any, segs []seg, val any, del bool) (any, error) {
	if len(segs) == 0 {
		return val, nil
	}
	s := segs[0]
	last := len(segs) == 1
	if s.index == -1 {
		m, ok := cur.(map[string]any)
		if !ok {
			if cur != nil {
				return nil, fmt.Errorf("%s: not an object", s.name)
			}
			m = map[string]any{}
		}
		if last && del {
			delete(m, s.name)
			return m, nil
		}
		v, err := setPath(m[s.name], segs[1:], val, del)
		if err != nil {
			return nil, err
		}
		m[s.name] = v
		return m, nil
	}
	l, _ := cur.([]any)
	i := s.index
	if i == -2 {
		l = append(l, nil)
		i = len(l) - 1
	}
	if i >= len(l) {
		return nil, fmt.Errorf("index %d out of range (%d items)", i, len(l))
	}
	if last && del {
		return append(l[:i:i], l[i+1:]...), nil
	}
	v, err := setPath(l[i], segs[1:], val, del)
	if err != nil {
		return nil, err
	}
	l[i] = v
	return l, nil
}

// toJSON decodes JSON into a generic document (numbers kept as written).
func toJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func deepCopy(v any) any {
	b, _ := json.Marshal(v)
	out, _ := toJSON(b)
	return out
}

// verbose: BADINPUT_VERBOSE=1 prints every error a case got (what the user would read).
func verbose() bool { return os.Getenv("BADINPUT_VERBOSE") != "" }

func clipShort(s string) string {
	s = strings.ReplaceAll(s, "\n", `\n`)
	if len(s) > 400 {
		return s[:400] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}
