package mcp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/policy"
)

// benchClient is an MCP host that keeps many tools/calls in flight over
// one stdio connection and times each.
type benchClient struct {
	w       io.Writer
	mu      sync.Mutex
	waiting map[int64]chan struct{}
	next    atomic.Int64
}

func newBenchClient(w io.Writer, r io.Reader) *benchClient {
	c := &benchClient{w: w, waiting: map[int64]chan struct{}{}}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<26)
		for sc.Scan() {
			id := gjson.GetBytes(sc.Bytes(), "id")
			if !id.Exists() {
				continue
			}
			c.mu.Lock()
			ch := c.waiting[id.Int()]
			delete(c.waiting, id.Int())
			c.mu.Unlock()
			if ch != nil {
				close(ch)
			}
		}
	}()
	return c
}

func (c *benchClient) roundTrip(line string) {
	id := c.next.Add(1)
	ch := make(chan struct{})
	c.mu.Lock()
	c.waiting[id] = ch
	msg := fmt.Sprintf(line, id)
	_, err := io.WriteString(c.w, msg+"\n")
	c.mu.Unlock()
	if err != nil {
		panic(err)
	}
	<-ch
}

const benchCall = `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`
const benchInit = `{"jsonrpc":"2.0","id":%d,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`

// sqliteMeter is the real engine over a fresh SQLite ledger.
func sqliteMeter(b *testing.B) (*interpose.Engine, string) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{SkipSchemaCheck: true})
	if err != nil {
		b.Fatal(err)
	}
	return engineOver(b, s)
}

// postgresMeter is the same on a fresh PostgreSQL database (internal/pgtest).
func postgresMeter(b *testing.B) (*interpose.Engine, string) {
	s, err := postgres.Open(context.Background(), pgtest.URL(b), postgres.Options{SkipSchemaCheck: true})
	if err != nil {
		b.Fatal(err)
	}
	return engineOver(b, s)
}

// engineOver migrates s and seeds agent "bench" with a large budget and a
// price for every tool of "fake".
func engineOver(b *testing.B, s *sqlstore.Store) (*interpose.Engine, string) {
	ctx := context.Background()
	b.Cleanup(func() { s.Close() })
	if _, err := s.MigrateUp(ctx); err != nil {
		b.Fatal(err)
	}
	a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "bench", Owner: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: money.MustParse("1000000"), Currency: "USD",
		Window: policy.WindowTotal, WindowType: policy.WindowCalendar, Timezone: "UTC"}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "mcp:fake/*", PerCall: money.MustParse("0.001"), Currency: "USD"}); err != nil {
		b.Fatal(err)
	}
	return interpose.New(interpose.Options{Store: s}), a.ID
}

// BenchmarkToolsCall times one tools/call from host to the fake upstream
// and back: directly ("direct", the baseline), through a relay that copies
// bytes both ways without parsing them ("nullrelay", the least any relay
// can add), through the proxy with an in-memory meter, and through the
// proxy with the real engine on SQLite (durable commits) and PostgreSQL.
// p50 and p99 are reported per call, with calls/s; the added latency of a
// relay is the difference of its p50 from "direct" in the same run.
func BenchmarkToolsCall(b *testing.B) {
	for _, mode := range []string{"direct", "nullrelay", "proxy-fakemeter", "proxy-sqlite", "proxy-postgres"} {
		for _, conc := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/c=%d", mode, conc), func(b *testing.B) {
				c := benchSetup(b, mode)
				c.roundTrip(benchInit)
				for range 20 { // warm up
					c.roundTrip(benchCall)
				}
				lat := make([]time.Duration, b.N)
				var idx atomic.Int64
				b.ResetTimer()
				var wg sync.WaitGroup
				for range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := idx.Add(1) - 1
							if i >= int64(b.N) {
								return
							}
							t0 := time.Now()
							c.roundTrip(benchCall)
							lat[i] = time.Since(t0)
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
			})
		}
	}
}

func benchSetup(b *testing.B, mode string) *benchClient {
	switch mode {
	case "direct":
		in, out := startFakeUpstream(b)
		return newBenchClient(in, out)
	case "nullrelay":
		// The floor for any relay: the host's bytes go through an in-process
		// pipe, as they do to the proxy, and are copied unparsed to the same
		// upstream process and back.
		in, out := startFakeUpstream(b)
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		go func() { _, _ = io.Copy(in, inR); in.Close() }()
		go func() { _, _ = io.Copy(outW, out); outW.Close() }()
		b.Cleanup(func() { inW.Close() })
		return newBenchClient(inW, outR)
	}
	var m interpose.Meter = newFakeMeter("1000000")
	agent := "agent-1"
	switch mode {
	case "proxy-sqlite":
		m, agent = sqliteMeter(b)
	case "proxy-postgres":
		m, agent = postgresMeter(b)
	}
	p, err := New(Options{Meter: m, Stderr: io.Discard, Upstreams: []UpstreamSpec{{Name: "fake", Command: []string{os.Args[0]}, Env: map[string]string{"CARACAL_FAKE_UPSTREAM": "1"}}}})
	if err != nil {
		b.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan struct{})
	go func() {
		_ = p.ServeStdio(context.Background(), agent, inR, outW)
		outW.Close()
		close(done)
	}()
	b.Cleanup(func() { inW.Close(); <-done })
	return newBenchClient(inW, outR)
}

// startFakeUpstream starts the fake MCP server as a child process and
// returns its stdin and stdout; it is stopped when b ends.
func startFakeUpstream(b *testing.B) (io.WriteCloser, io.Reader) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "CARACAL_FAKE_UPSTREAM=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	return in, out
}
