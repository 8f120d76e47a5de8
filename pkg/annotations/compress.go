package annotations

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
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
	// Encoding is "gzip": Data is the base64 of the gzipped Desired JSON.
	Encoding string `json:"encoding"`
	Data     string `json:"data"`
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

// inflate returns the Desired JSON inside s: s itself, or the content of its envelope, and then
// the envelope (nil for a plain document), whose generation the caller checks against the
// content's once it has decoded it (the content is decoded once, strictly, not a second time
// here for its generation: 1 MB of JSON at 10 000 rules).
func inflate(s string) ([]byte, *envelope, error) {
	var probe struct {
		Encoding *string `json:"encoding"`
	}
	// A plain Desired has no "encoding" field; errors are left to the strict decode that follows.
	if json.Unmarshal([]byte(s), &probe) != nil || probe.Encoding == nil {
		return []byte(s), nil, nil
	}
	var env envelope
	if err := decodeStrict(DesiredKey, []byte(s), &env); err != nil {
		return nil, nil, err
	}
	if err := checkVersion(DesiredKey, env.Version); err != nil {
		return nil, nil, err
	}
	if env.Encoding != encodingGzip {
		return nil, nil, fmt.Errorf("annotation %s: encoding %q is not supported (want %q)", DesiredKey, env.Encoding, encodingGzip)
	}
	z, err := base64.StdEncoding.DecodeString(env.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("annotation %s: data: invalid base64: %w", DesiredKey, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, nil, fmt.Errorf("annotation %s: data: invalid gzip: %w", DesiredKey, err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, maxInflated+1))
	if err != nil {
		return nil, nil, fmt.Errorf("annotation %s: data: invalid gzip: %w", DesiredKey, err)
	}
	if len(raw) > maxInflated {
		return nil, nil, fmt.Errorf("annotation %s: data: inflates to more than %d bytes", DesiredKey, maxInflated)
	}
	return raw, &env, nil
}

// checkEnvelopeGeneration: the envelope's generation is read without inflating (to report which
// generation was refused), so it must be the content's.
func checkEnvelopeGeneration(env *envelope, content int64) error {
	if env != nil && env.Generation != content {
		return fmt.Errorf("annotation %s: generation: the envelope's %d differs from its content's %d", DesiredKey, env.Generation, content)
	}
	return nil
}
