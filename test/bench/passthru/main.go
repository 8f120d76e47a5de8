// Command passthru is the floor for the CNI benchmark: the least a chained Go plugin can do (print
// prevResult on ADD, nothing on DEL). `make bench` runs it in vpcnat's place, so the cost of
// vpcnat's own normal-pod path can be told apart from the cost of starting any Go process.
package main

import (
	"encoding/json"
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
		var conf struct {
			PrevResult json.RawMessage `json:"prevResult"`
		}
		if err := json.Unmarshal(in, &conf); err != nil {
			os.Exit(1)
		}
		_, _ = os.Stdout.Write(conf.PrevResult)
	case "VERSION":
		_, _ = os.Stdout.Write([]byte(`{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}`))
	}
}
