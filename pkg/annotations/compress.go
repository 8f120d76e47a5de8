package annotations

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// A pod's annotations may total 256 KiB, and a desired state of 10 000 rules is about 1 MB of
// JSON. Above compressThreshold the desired state is carried gzipped (it compresses ~15:1: the
// field names repeat in every rule) inside a small versioned envelope, which ParseDesired
// recognises by its "encoding" field.
const compressThreshold = 16 * 1024

// maxInflated bounds what a compressed annotation may expand to, so a hostile one cannot make the
// daemon allocate without limit (a gzip bomb); 64 MiB is far above 20 000 rules.
const maxInflated = 64 << 20

// envelope is the compressed form of the desired annotation.
type envelope struct {
	Version    string `json:"version"`
	Generation int64  `json:"generation"`
	// Encoding is "gzip": Data is the base64 of the gzipped Desired JSON; or "deflate-parts"
	// (parts.go): Head and the rule lists' parts, each the base64 of raw DEFLATE.
	Encoding    string   `json:"encoding"`
	Data        string   `json:"data,omitempty"`
	Head        string   `json:"head,omitempty"`
	FloatingIPs []string `json:"floatingIpRules,omitempty"`
	DNATs       []string `json:"dnatRules,omitempty"`
	SNATs       []string `json:"snatRules,omitempty"`
}

const encodingGzip = "gzip"

// EncodeDesired is the value of the DesiredKey annotation for d: its JSON, or the compressed
// envelope when the JSON is large.
func EncodeDesired(d *Desired) (string, error) {
	raw, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("encoding desired state: %w", err)
	}
	if len(raw) <= compressThreshold {
		return string(raw), nil
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return "", err
	}
	if _, err := zw.Write(raw); err != nil {
		return "", fmt.Errorf("compressing desired state: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("compressing desired state: %w", err)
	}
	b, err := json.Marshal(envelope{Version: Version, Generation: d.Generation, Encoding: encodingGzip,
		Data: base64.StdEncoding.EncodeToString(buf.Bytes())})
	return string(b), err
}

// readEnvelope decodes the envelope of a compressed desired annotation s, or returns nil for a
// plain document (one without an "encoding" field). It checks the envelope's version and
// encoding, not its data.
func readEnvelope(s string) (*envelope, error) {
	var env envelope
	// An envelope, as it usually is when the key "encoding" is there, decodes at once; anything
	// else is looked at again below. (A key spelled with escapes is found by the look; a plain
	// document never has the key: its strict decode refuses it.)
	strictErr := errors.New("no encoding")
	if strings.Contains(s, `"encoding"`) {
		strictErr = decodeStrict(DesiredKey, []byte(s), &env)
	}
	if strictErr != nil {
		var probe struct {
			Encoding *string `json:"encoding"`
		}
		// A plain Desired has no "encoding" field; errors are left to the strict decode that follows.
		if json.Unmarshal([]byte(s), &probe) != nil || probe.Encoding == nil {
			return nil, nil
		}
		if err := decodeStrict(DesiredKey, []byte(s), &env); err != nil {
			return nil, err
		}
	}
	if err := checkVersion(DesiredKey, env.Version); err != nil {
		return nil, err
	}
	if env.Encoding != encodingGzip && env.Encoding != encodingParts {
		return nil, fmt.Errorf("annotation %s: encoding %q is not supported (want %q or %q)", DesiredKey, env.Encoding, encodingGzip, encodingParts)
	}
	return &env, nil
}

// inflate returns the Desired JSON of s: s itself when env is nil (a plain document), else the
// content of its gzip envelope, whose generation the caller checks against the content's once
// it has decoded it (the content is decoded once, strictly, not a second time here for its
// generation: 1 MB of JSON at 10 000 rules).
func inflate(s string, env *envelope) ([]byte, error) {
	if env == nil {
		return []byte(s), nil
	}
	if env.Encoding != encodingGzip {
		return nil, fmt.Errorf("annotation %s: encoding %q is not supported here (want %q)", DesiredKey, env.Encoding, encodingGzip)
	}
	if env.Head != "" || env.FloatingIPs != nil || env.DNATs != nil || env.SNATs != nil {
		return nil, fmt.Errorf("annotation %s: encoding %q carries its state in data only, not in head or rule parts", DesiredKey, encodingGzip)
	}
	z, err := base64.StdEncoding.DecodeString(env.Data)
	if err != nil {
		return nil, fmt.Errorf("annotation %s: data: invalid base64: %w", DesiredKey, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("annotation %s: data: invalid gzip: %w", DesiredKey, err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, maxInflated+1))
	if err != nil {
		return nil, fmt.Errorf("annotation %s: data: invalid gzip: %w", DesiredKey, err)
	}
	if len(raw) > maxInflated {
		return nil, fmt.Errorf("annotation %s: data: inflates to more than %d bytes", DesiredKey, maxInflated)
	}
	return raw, nil
}

// checkEnvelopeGeneration: the envelope's generation is read without inflating (to report which
// generation was refused), so it must be the content's.
func checkEnvelopeGeneration(env *envelope, content int64) error {
	if env != nil && env.Generation != content {
		return fmt.Errorf("annotation %s: generation: the envelope's %d differs from its content's %d", DesiredKey, env.Generation, content)
	}
	return nil
}
