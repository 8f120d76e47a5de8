package fastpath

import "errors"

// A small, strict JSON reader. encoding/json is not used here: linking it (reflection, its type
// caches) costs the dispatcher about a quarter of a millisecond at every start, which is a fifth
// of its whole run. It accepts only RFC 8259 JSON and refuses more than encoding/json does: a
// refusal is never an error for the pod, only a hand-off to the full plugin, which reads the
// configuration with encoding/json. What it returns is a tree that keeps each value's bytes.

type kind int

const (
	kNull kind = iota
	kBool
	kNumber
	kString
	kArray
	kObject
)

type value struct {
	kind  kind
	raw   []byte   // the value's bytes in the input (for a string: with its quotes)
	plain bool     // string: no escape and no byte outside printable ASCII (raw[1:len-1] is its value)
	elems []*value // array
	keys  []string // object: member names (only plain ASCII names are accepted)
	vals  []*value // object: member values, in the order of keys
}

// str is a plain string's value.
func (v *value) str() (string, bool) {
	if v == nil || v.kind != kString || !v.plain {
		return "", false
	}
	return string(v.raw[1 : len(v.raw)-1]), true
}

// get returns an object's member by exact name.
func (v *value) get(name string) *value {
	for i, k := range v.keys {
		if k == name {
			return v.vals[i]
		}
	}
	return nil
}

var errJSON = errors.New("not JSON this reader accepts")

const maxDepth = 64

type reader struct {
	in  []byte
	pos int
}

// parseJSON reads one JSON value followed only by white space.
func parseJSON(in []byte) (*value, error) {
	r := &reader{in: in}
	v, err := r.value(0)
	if err != nil {
		return nil, err
	}
	r.space()
	if r.pos != len(r.in) {
		return nil, errJSON
	}
	return v, nil
}

func (r *reader) space() {
	for r.pos < len(r.in) {
		switch r.in[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

func (r *reader) value(depth int) (*value, error) {
	if depth > maxDepth {
		return nil, errJSON
	}
	r.space()
	if r.pos >= len(r.in) {
		return nil, errJSON
	}
	start := r.pos
	v := &value{}
	switch c := r.in[r.pos]; {
	case c == '{':
		v.kind = kObject
		r.pos++
		r.space()
		if r.pos < len(r.in) && r.in[r.pos] == '}' {
			r.pos++
			break
		}
		for {
			r.space()
			k, err := r.value(depth + 1)
			if err != nil || k.kind != kString || !k.plain {
				return nil, errJSON // also: a member name with an escape or a non-ASCII byte
			}
			r.space()
			if r.pos >= len(r.in) || r.in[r.pos] != ':' {
				return nil, errJSON
			}
			r.pos++
			m, err := r.value(depth + 1)
			if err != nil {
				return nil, err
			}
			v.keys = append(v.keys, string(k.raw[1:len(k.raw)-1]))
			v.vals = append(v.vals, m)
			r.space()
			if r.pos >= len(r.in) {
				return nil, errJSON
			}
			if r.in[r.pos] == '}' {
				r.pos++
				break
			}
			if r.in[r.pos] != ',' {
				return nil, errJSON
			}
			r.pos++
		}
	case c == '[':
		v.kind = kArray
		r.pos++
		r.space()
		if r.pos < len(r.in) && r.in[r.pos] == ']' {
			r.pos++
			break
		}
		for {
			e, err := r.value(depth + 1)
			if err != nil {
				return nil, err
			}
			v.elems = append(v.elems, e)
			r.space()
			if r.pos >= len(r.in) {
				return nil, errJSON
			}
			if r.in[r.pos] == ']' {
				r.pos++
				break
			}
			if r.in[r.pos] != ',' {
				return nil, errJSON
			}
			r.pos++
		}
	case c == '"':
		v.kind = kString
		if err := r.string(v); err != nil {
			return nil, err
		}
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(r.in)-r.pos >= len(lit) && string(r.in[r.pos:r.pos+len(lit)]) == lit {
				r.pos += len(lit)
				v.kind = kBool
				if lit == "null" {
					v.kind = kNull
				}
				break
			}
		}
		if r.pos == start {
			return nil, errJSON
		}
	case c == '-' || '0' <= c && c <= '9':
		v.kind = kNumber
		if err := r.number(); err != nil {
			return nil, err
		}
	default:
		return nil, errJSON
	}
	v.raw = r.in[start:r.pos]
	return v, nil
}

// string reads a string, checking its escapes; plain tells whether it has none and only
// printable ASCII, so that its bytes are its value.
func (r *reader) string(v *value) error {
	r.pos++ // the opening quote
	v.plain = true
	for r.pos < len(r.in) {
		c := r.in[r.pos]
		switch {
		case c == '"':
			r.pos++
			return nil
		case c < 0x20:
			return errJSON
		case c == '\\':
			v.plain = false
			if r.pos+1 >= len(r.in) {
				return errJSON
			}
			switch r.in[r.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				r.pos += 2
			case 'u':
				if r.pos+6 > len(r.in) {
					return errJSON
				}
				for _, h := range r.in[r.pos+2 : r.pos+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return errJSON
					}
				}
				r.pos += 6
			default:
				return errJSON
			}
		default:
			if c >= 0x7f {
				v.plain = false // UTF-8 (or not): encoding/json would read it, this reader does not interpret it
			}
			r.pos++
		}
	}
	return errJSON
}

// number reads a number by RFC 8259's grammar.
func (r *reader) number() error {
	digits := func() int {
		n := 0
		for r.pos < len(r.in) && '0' <= r.in[r.pos] && r.in[r.pos] <= '9' {
			r.pos++
			n++
		}
		return n
	}
	if r.in[r.pos] == '-' {
		r.pos++
	}
	if r.pos < len(r.in) && r.in[r.pos] == '0' {
		r.pos++
	} else if digits() == 0 {
		return errJSON
	}
	if r.pos < len(r.in) && r.in[r.pos] == '.' {
		r.pos++
		if digits() == 0 {
			return errJSON
		}
	}
	if r.pos < len(r.in) && (r.in[r.pos] == 'e' || r.in[r.pos] == 'E') {
		r.pos++
		if r.pos < len(r.in) && (r.in[r.pos] == '+' || r.in[r.pos] == '-') {
			r.pos++
		}
		if digits() == 0 {
			return errJSON
		}
	}
	return nil
}

// smallInt reports whether a number is a plain integer that every Go int holds (what
// encoding/json decodes into an int without an error).
func (v *value) smallInt() bool {
	if v == nil || v.kind != kNumber {
		return false
	}
	s := v.raw
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if len(s) == 0 || len(s) > 9 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// intValue is a smallInt's value.
func (v *value) intValue() int {
	n, neg := 0, false
	for _, c := range v.raw {
		if c == '-' {
			neg = true
			continue
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		return -n
	}
	return n
}
