// Command promqlcheck parses PromQL expressions with Prometheus's own parser, for
// test/monitoring: one JSON string per input line; for each it prints one line, "ok" and the
// metric names the expression selects (space-separated), or "error" and the parser's message.
// A module of its own, so that vpcnat's go.mod does not carry Prometheus; test/monitoring builds
// it (go's build cache keeps it).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	p := parser.NewParser(parser.Options{})
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var expr string
		if err := json.Unmarshal(sc.Bytes(), &expr); err != nil {
			fmt.Println("error input:", err)
			continue
		}
		e, err := p.ParseExpr(expr)
		if err != nil {
			fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		names := map[string]bool{}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
				names[vs.Name] = true
			}
			return nil
		})
		var out []string
		for n := range names {
			out = append(out, n)
		}
		sort.Strings(out)
		fmt.Println("ok", strings.Join(out, " "))
	}
}
