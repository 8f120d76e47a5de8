// Command passthru is the floor for the CNI benchmark: the least a chained Go plugin can do
// (print prevResult on ADD, nothing on DEL), without even encoding/json (linking it costs about
// a quarter of a millisecond per start here). `make bench` runs it in vpcnat's place, so the
// cost of vpcnat's own normal-pod path can be told apart from the cost of starting any Go
// process. It finds prevResult by a plain scan (libcni writes the configuration; this is a
// benchmark peer, not a plugin to ship).
package main

import (
	"bytes"
	"io"
	"os"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		os.Exit(1)
	}
	switch os.Getenv("CNI_COMMAND") {
	case "ADD":
		prev := object(in, []byte(`"prevResult":`))
		if prev == nil {
			os.Exit(1)
		}
		_, _ = os.Stdout.Write(prev)
	case "VERSION":
		_, _ = os.Stdout.Write([]byte(`{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}`))
	}
}

// object returns the JSON object that follows key in in (strings and their escapes respected).
func object(in, key []byte) []byte {
	i := bytes.Index(in, key)
	if i < 0 {
		return nil
	}
	start := bytes.IndexByte(in[i+len(key):], '{')
	if start < 0 {
		return nil
	}
	start += i + len(key)
	depth, str := 0, false
	for j := start; j < len(in); j++ {
		c := in[j]
		switch {
		case str && c == '\\':
			j++
		case str:
			str = c != '"'
		case c == '"':
			str = true
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				return in[start : j+1]
			}
		}
	}
	return nil
}
