package postgres_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// Environment of the child processes of BenchmarkReserveSettleTwoProcesses.
const (
	benchURLEnv    = "CARACAL_BENCH_CHILD_URL"
	benchAgentsEnv = "CARACAL_BENCH_CHILD_AGENTS" // comma-separated
	benchCountEnv  = "CARACAL_BENCH_CHILD_COUNT"
)

// Lines a benchmark child writes on its stdout, and the one it waits for
// on its stdin.
const (
	benchReadyLine = "reserve-settle-child: ready"
	benchGoLine    = "go"
	benchDonePfx   = "reserve-settle-child: done="
)

// benchCallersPerProcess and benchConnsPerProcess are each child's
// concurrent callers and pool size (the pool of BenchmarkReserveSettle).
const (
	benchCallersPerProcess = 32
	benchConnsPerProcess   = 8
)

// BenchmarkReserveSettleTwoProcesses measures Reserve+Settle round trips
// made by two OS processes (this test binary again, in child mode) of 32
// concurrent callers each on one PostgreSQL database, as two `caracal`
// instances sharing a database would. b.N round trips are split between
// the processes; "ops/s" is b.N over the time from releasing both
// processes together to the later one finishing, so process start,
// connecting and seeding are not counted. chains=64 gives every caller
// its own delegation chain; chains=1 has all 64 callers of both processes
// spend under the same two policies, the contended case.
func BenchmarkReserveSettleTwoProcesses(b *testing.B) {
	if os.Getenv(benchURLEnv) != "" {
		reserveSettleChild(b)
		return
	}
	for _, chains := range []int{2 * benchCallersPerProcess, 1} {
		b.Run(fmt.Sprintf("c=2x%d/chains=%d", benchCallersPerProcess, chains), func(b *testing.B) {
			url := pgtest.URL(b)
			s := openEnforceStore(b, url, 4)
			agents := storetest.BenchChains(b, s, chains)
			// Each process spends under half of the chains, or under the
			// same one when there is only one.
			perProcess := [2][]string{agents, agents}
			if chains > 1 {
				perProcess = [2][]string{agents[:chains/2], agents[chains/2:]}
			}
			counts := [2]int{b.N / 2, b.N - b.N/2}
			var children [2]*benchChild
			for i := range children {
				children[i] = startBenchChild(b, url, perProcess[i], counts[i])
			}
			for i, c := range children {
				if err := c.wait(c.ready); err != nil {
					b.Fatalf("process %d never became ready: %v", i, err)
				}
			}
			b.ResetTimer()
			for _, c := range children {
				if _, err := io.WriteString(c.stdin, benchGoLine+"\n"); err != nil {
					b.Fatal(err)
				}
			}
			done := 0
			for i, c := range children {
				if err := c.wait(c.done); err != nil {
					b.Fatalf("process %d: %v", i, err)
				}
				done += c.count
			}
			b.StopTimer()
			if done != b.N {
				b.Fatalf("the processes made %d round trips, want %d", done, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// benchChild is one running child process of the benchmark.
type benchChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  chan struct{} // closed when it is connected and waiting
	done   chan struct{} // closed when it has finished its round trips
	exited chan struct{} // closed when its stdout ends; err is then set
	count  int           // round trips it reports, set before done closes
	err    error
	mu     sync.Mutex
	out    strings.Builder // all it printed, for failure messages
}

func startBenchChild(b *testing.B, url string, agents []string, count int) *benchChild {
	c := &benchChild{ready: make(chan struct{}), done: make(chan struct{}), exited: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkReserveSettleTwoProcesses$", "-test.benchtime=1x", "-test.count=1")
	c.cmd.Env = append(os.Environ(), benchURLEnv+"="+url, benchAgentsEnv+"="+strings.Join(agents, ","), benchCountEnv+"="+strconv.Itoa(count))
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	c.cmd.Stderr = &lockedWriter{c}
	if err := c.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(&lockedWriter{c}, line)
			if line == benchReadyLine {
				close(c.ready)
			} else if v, ok := strings.CutPrefix(line, benchDonePfx); ok {
				c.count, _ = strconv.Atoi(v)
				close(c.done)
			}
		}
		werr := c.cmd.Wait()
		c.mu.Lock()
		c.err = fmt.Errorf("exited (%v) with output:\n%s", werr, c.out.String())
		c.mu.Unlock()
		close(c.exited)
	}()
	b.Cleanup(func() {
		c.stdin.Close()
		<-c.exited
	})
	return c
}

// wait waits for ev, or returns why the child ended without it.
func (c *benchChild) wait(ev <-chan struct{}) error {
	select {
	case <-ev:
		return nil
	case <-c.exited:
		select {
		case <-ev:
			return nil
		default:
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.err
	}
}

// lockedWriter appends to a child's captured output.
type lockedWriter struct{ c *benchChild }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.out.Write(p)
}

// reserveSettleChild is the child side: it connects, says it is ready,
// waits for the go line on stdin, makes its round trips with
// benchCallersPerProcess callers and prints how many it made.
func reserveSettleChild(b *testing.B) {
	ctx := context.Background()
	count, err := strconv.Atoi(os.Getenv(benchCountEnv))
	if err != nil {
		b.Fatalf("%s: %v", benchCountEnv, err)
	}
	agents := strings.Split(os.Getenv(benchAgentsEnv), ",")
	s, err := postgres.Open(ctx, os.Getenv(benchURLEnv), postgres.Options{SkipSchemaCheck: true, MaxConns: benchConnsPerProcess})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// Open every pooled connection now, so the timed part does not.
	if err := storetest.ReserveSettleN(ctx, s, agents, benchCallersPerProcess, benchCallersPerProcess); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	fmt.Println(benchReadyLine)
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		b.Fatal(err)
	}
	if strings.TrimSpace(line) != benchGoLine {
		b.Fatalf("stdin said %q, want %q", line, benchGoLine)
	}
	if err := storetest.ReserveSettleN(ctx, s, agents, benchCallersPerProcess, int64(count)); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("%s%d\n", benchDonePfx, count)
}
