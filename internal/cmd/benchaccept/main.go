// Command benchaccept reads the output of the acceptance benchmarks (`make
// bench-accept`, go test -bench lines) on stdin and prints each acceptance
// figure, worked out from a Caracal path and the baseline measured beside
// it in the same run, with its target and whether it is met.
//
// When a benchmark ran more than once (-count), the median of each metric
// is used. It exits 1 if a figure cannot be worked out because a benchmark
// line is missing, and 0 otherwise, met or not: the figures are judged by
// whoever reads them, knowing how loaded the machine was.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	runs, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchaccept:", err)
		os.Exit(1)
	}
	if !report(os.Stdout, evaluate(runs)) {
		os.Exit(1)
	}
}

// runs holds every value seen, by "pkg.Benchmark/sub" and unit.
type runs map[string]map[string][]float64

// procsSuffix is the -GOMAXPROCS suffix go test adds to a benchmark name.
var procsSuffix = regexp.MustCompile(`-\d+$`)

// parse reads go test -bench output. A benchmark is named by the last
// element of its package ("pkg:" line) and its full name without the
// GOMAXPROCS suffix, e.g. "sqlite.BenchmarkReserveSettle/c=32/chains=1".
func parse(r io.Reader) (runs, error) {
	out := runs{}
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = path.Base(strings.TrimSpace(p))
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // a benchmark's own log line, not a result
		}
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("benchmark line with a value and no unit: %q", line)
		}
		name := pkg + "." + procsSuffix.ReplaceAllString(f[0], "")
		if out[name] == nil {
			out[name] = map[string][]float64{}
		}
		for i := 2; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: value %q: %w", line, f[i], err)
			}
			out[name][f[i+1]] = append(out[name][f[i+1]], v)
		}
	}
	return out, sc.Err()
}

// get is the median of a metric; ok is false if it was never reported.
func (r runs) get(name, unit string) (float64, bool) {
	vs := slices.Clone(r[name][unit])
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2], true
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2, true
}

// figure is one acceptance figure.
type figure struct {
	what     string
	value    float64
	unit     string
	atMost   bool // the target is an upper bound (latency), else a lower one
	target   float64
	detail   string // the measurements it comes from
	missing  string // the metric that was not found, if any
	baseline bool   // shown for comparison, no target
}

func (f figure) met() bool {
	if f.atMost {
		return f.value <= f.target
	}
	return f.value >= f.target
}

// evaluate works out the acceptance figures.
func evaluate(r runs) []figure {
	var figs []figure
	// added is the difference of a path's latency from its baseline's.
	added := func(what, path, base, unit string, target float64, baseline bool) {
		p, ok1 := r.get(path, unit)
		d, ok2 := r.get(base, unit)
		f := figure{what: what, value: p - d, unit: "µs", atMost: true, target: target, baseline: baseline,
			detail: fmt.Sprintf("%.1f - %.1f %s", p, d, unit)}
		f.missing = missing(ok1, path, ok2, base, unit)
		figs = append(figs, f)
	}
	// reported is a metric a benchmark reports itself.
	reported := func(what, name, unit string, atMost bool, target float64, baseline bool) {
		v, ok := r.get(name, unit)
		shown := unit
		if strings.HasSuffix(unit, "-µs") {
			shown = "µs"
		}
		f := figure{what: what, value: v, unit: shown, atMost: atMost, target: target, baseline: baseline, detail: name}
		f.missing = missing(ok, name, true, "", unit)
		figs = append(figs, f)
	}
	// ratio is a path's rate as a percentage of its baseline's.
	ratio := func(what, path, base, unit string, target float64) {
		p, ok1 := r.get(path, unit)
		d, ok2 := r.get(base, unit)
		f := figure{what: what, unit: "%", target: target, detail: fmt.Sprintf("%.0f / %.0f %s", p, d, unit)}
		if d != 0 {
			f.value = 100 * p / d
		}
		f.missing = missing(ok1, path, ok2, base, unit)
		figs = append(figs, f)
	}

	const tc = "mcp.BenchmarkToolsCall/"
	added("MCP added p50, c=1, SQLite relay over direct", tc+"proxy-sqlite/c=1", tc+"direct/c=1", "p50-µs", 400, false)
	added("MCP added p50, c=1, in-memory meter relay over direct", tc+"proxy-fakemeter/c=1", tc+"direct/c=1", "p50-µs", 400, true)
	added("MCP added p50, c=1, null byte relay over direct", tc+"nullrelay/c=1", tc+"direct/c=1", "p50-µs", 400, true)
	ratio("MCP calls/s, c=16, SQLite relay / in-memory meter relay", tc+"proxy-sqlite/c=16", tc+"proxy-fakemeter/c=16", "calls/s", 50)

	const al, th = "llmproxy.BenchmarkAddedLatency/", "llmproxy.BenchmarkThroughput/"
	reported("LLM proxy added p50, c=1, SQLite over direct", al+"sqlite/plain/c1", "added-p50-µs", true, 500, false)
	reported("LLM bare ReverseProxy added p50, c=1, over direct", al+"bare/plain/c1", "added-p50-µs", true, 500, true)
	ratio("LLM req/s, c=64, SQLite proxy / bare ReverseProxy", th+"sqlite/plain/c64", th+"bare/plain/c64", "req/s", 50)

	for _, chains := range []string{"1", "32"} {
		reported("SQLite reserve+settle, c=32, chains="+chains, "sqlite.BenchmarkReserveSettle/c=32/chains="+chains, "ops/s", false, 20000, false)
	}
	for _, chains := range []string{"64", "1"} {
		reported("PostgreSQL reserve+settle, 2 processes x 32, chains="+chains, "postgres.BenchmarkReserveSettleTwoProcesses/c=2x32/chains="+chains, "ops/s", false, 10000, false)
	}
	return figs
}

func missing(ok1 bool, name1 string, ok2 bool, name2, unit string) string {
	switch {
	case !ok1:
		return name1 + " " + unit
	case !ok2:
		return name2 + " " + unit
	}
	return ""
}

// report prints the figures; it returns false if any is missing.
func report(w io.Writer, figs []figure) bool {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tmeasured\ttarget\tverdict\tfrom")
	complete := true
	for _, f := range figs {
		cmp := "≥"
		if f.atMost {
			cmp = "≤"
		}
		verdict := "missed"
		switch {
		case f.missing != "":
			complete = false
			fmt.Fprintf(tw, "%s\t-\t%s %g %s\tNO DATA\tmissing %s\n", f.what, cmp, f.target, f.unit, f.missing)
			continue
		case f.baseline:
			verdict = "(baseline)"
		case f.met():
			verdict = "met"
		}
		target := fmt.Sprintf("%s %g %s", cmp, f.target, f.unit)
		if f.baseline {
			target = "-"
		}
		fmt.Fprintf(tw, "%s\t%.1f %s\t%s\t%s\t%s\n", f.what, f.value, f.unit, target, verdict, f.detail)
	}
	tw.Flush()
	return complete
}
