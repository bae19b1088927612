package main

import (
	"math"
	"strings"
	"testing"
)

// sample is go test -bench output of every acceptance benchmark, two runs
// of the MCP ones (-count 2), with the lines go test prints around them.
const sample = `goos: linux
goarch: amd64
pkg: github.com/caracal-dev/caracal/mcp
cpu: AMD EPYC
BenchmarkToolsCall/direct/c=1-2         	    2000	    186144 ns/op	      5372 calls/s	       100.0 p50-µs	       321.2 p99-µs
BenchmarkToolsCall/direct/c=1-2         	    2000	    186144 ns/op	      5372 calls/s	       120.0 p50-µs	       321.2 p99-µs
BenchmarkToolsCall/nullrelay/c=1-2      	    2000	    179740 ns/op	      5564 calls/s	       125.0 p50-µs	       427.1 p99-µs
BenchmarkToolsCall/nullrelay/c=1-2      	    2000	    179740 ns/op	      5564 calls/s	       135.0 p50-µs	       427.1 p99-µs
BenchmarkToolsCall/proxy-fakemeter/c=1-2      	    2000	    179740 ns/op	      5564 calls/s	       150.0 p50-µs	       427.1 p99-µs
BenchmarkToolsCall/proxy-fakemeter/c=16-2     	    2000	     23833 ns/op	     40000 calls/s	       323.9 p50-µs	      1422 p99-µs
BenchmarkToolsCall/proxy-sqlite/c=1-2         	    2000	    229920 ns/op	      4349 calls/s	       610.0 p50-µs	       485.2 p99-µs
BenchmarkToolsCall/proxy-sqlite/c=1-2         	    2000	    229920 ns/op	      4349 calls/s	       630.0 p50-µs	       485.2 p99-µs
BenchmarkToolsCall/proxy-sqlite/c=16-2        	    2000	     60137 ns/op	     16000 calls/s	       790.5 p50-µs	      3550 p99-µs
PASS
ok  	github.com/caracal-dev/caracal/mcp	1.710s
pkg: github.com/caracal-dev/caracal/interpose/llmproxy
BenchmarkAddedLatency/bare/plain/c1-2         	     500	    308721 ns/op	        95.87 added-p50-µs	       503.5 added-p99-µs	        60.72 direct-p50-µs	4407 req/s
BenchmarkAddedLatency/sqlite/plain/c1-2       	     500	   1668730 ns/op	      450 added-p50-µs	       2414 added-p99-µs	        64.33 direct-p50-µs	631.7 req/s
BenchmarkThroughput/bare/plain/c64-2          	     500	    155702 ns/op	      6000 req/s
BenchmarkThroughput/sqlite/plain/c64-2        	     500	    369561 ns/op	      2700 req/s
pkg: github.com/caracal-dev/caracal/ledger/sqlite
BenchmarkReserveSettle/c=32/chains=1-2        	    2000	    386868 ns/op	      2585 ops/s
BenchmarkReserveSettle/c=32/chains=32-2       	    2000	    394733 ns/op	      25000 ops/s
pkg: github.com/caracal-dev/caracal/ledger/postgres
pgtest: PostgreSQL 15.18 throwaway cluster at 127.0.0.1:42997 (data in /tmp/caracal-pgtest-2435381866)
BenchmarkReserveSettleTwoProcesses/c=2x32/chains=64-2         	    2000	    785308 ns/op	      12000 ops/s
BenchmarkReserveSettleTwoProcesses/c=2x32/chains=1-2          	    2000	   1233019 ns/op	       811.0 ops/s
BenchmarkReserveSettleTwoProcesses
    twoprocess_bench_test.go:75: a log line of the benchmark
`

func TestEvaluate(t *testing.T) {
	r, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	figs := evaluate(r)
	want := []struct {
		value float64
		met   bool
	}{
		{620 - 110, false}, // MCP SQLite added p50: medians of two runs each
		{150 - 110, true},  // in-memory meter
		{130 - 110, true},  // null relay
		{40, false},        // 16000 / 40000 calls/s
		{450, true},        // LLM added p50 as reported
		{95.87, true},      // bare
		{45, false},        // 2700 / 6000 req/s
		{2585, false},      // SQLite chains=1
		{25000, true},      // SQLite chains=32
		{12000, true},      // PostgreSQL chains=64
		{811, false},       // PostgreSQL chains=1
	}
	if len(figs) != len(want) {
		t.Fatalf("%d figures, want %d", len(figs), len(want))
	}
	for i, w := range want {
		f := figs[i]
		if f.missing != "" {
			t.Errorf("%s: missing %s", f.what, f.missing)
		}
		if math.Abs(f.value-w.value) > 1e-9 || f.met() != w.met {
			t.Errorf("%s = %v (met %v), want %v (met %v)", f.what, f.value, f.met(), w.value, w.met)
		}
	}
	var out strings.Builder
	if !report(&out, figs) {
		t.Errorf("report says figures are missing:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "(baseline)") {
		t.Errorf("baselines not marked:\n%s", out.String())
	}
}

// A benchmark that did not run is reported as missing, so a renamed or
// failed benchmark is not silently passed over.
func TestMissingBenchmark(t *testing.T) {
	in := strings.Replace(sample, "BenchmarkThroughput/bare/plain/c64-2", "BenchmarkThroughput/renamed/plain/c64-2", 1)
	r, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if report(&out, evaluate(r)) {
		t.Fatalf("report says complete without the bare throughput:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "missing llmproxy.BenchmarkThroughput/bare/plain/c64 req/s") {
		t.Errorf("missing benchmark not named:\n%s", out.String())
	}
}

func TestParseRejectsValueWithoutUnit(t *testing.T) {
	if _, err := parse(strings.NewReader("pkg: x\nBenchmarkX-2 10 5 ns/op 7\n")); err == nil {
		t.Fatal("no error for a value without a unit")
	}
}
