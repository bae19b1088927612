package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/policy"
)

// BenchmarkDashboardLedgerFirstPage measures how long the Ledger page
// takes to show its first page (100 rows) over a ledger of 10,000 events:
// from navigation until the hundredth row is in the document. The figure
// is recorded in docs/BENCHMARKS.md; no test asserts it.
//
//	go test ./e2e/ -run '^$' -bench DashboardLedgerFirstPage -benchtime 10x
func BenchmarkDashboardLedgerFirstPage(b *testing.B) {
	dir := b.TempDir()
	caracal := func(args ...string) string {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "CARACAL_HOME="+dir)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("caracal %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	caracal("init")
	caracal("agent", "register", "--name", "bench", "--owner", "bench@example.com")
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(caracal("admin", "token", "create", "--name", "bench", "-o", "json")), &tok); err != nil {
		b.Fatal(err)
	}

	// 10,000 events written straight into the store (denials: one write
	// transaction each, no reservation).
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "caracal.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ag, err := st.GetAgent(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-10000 * time.Second)
	for i := range 10000 {
		_, err := st.RecordDenial(ctx, ledger.ReserveRequest{RequestID: fmt.Sprintf("bench-%d", i), AgentID: ag.ID,
			Resource: fmt.Sprintf("mcp:bench/tool_%d", i%17), Operation: "tools/call", Currency: "USD", Now: start.Add(time.Duration(i) * time.Second)},
			policy.Decision{Code: policy.CodeBudgetExceeded, Reason: "benchmark"})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}

	cmd := exec.Command(binary, "serve", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "CARACAL_HOME="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	_, rest, _ := strings.Cut(line, "listening on ")
	base, _, _ := strings.Cut(strings.TrimSpace(rest), " ")

	bctx := newBrowser(b)
	signIn(b, bctx, base, tok.Token)
	var total time.Duration
	n := 0
	var apiMS, renderMS float64
	b.ResetTimer()
	for b.Loop() {
		do(b, bctx, "leave", chromedp.Navigate("about:blank"))
		t0 := time.Now()
		do(b, bctx, "ledger first page", chromedp.Navigate(base+"/#/ledger"),
			chromedp.WaitReady(chromedp.CSS("#ledger-table tbody tr:nth-child(100)")))
		total += time.Since(t0)
		// In the page: the API call's duration, and the time from its
		// answer to the rendered table.
		tm := runB(b, bctx, "timings", chromedp.Evaluate[[]float64](`(() => {
			const api = performance.getEntriesByType("resource").find((r) => r.name.includes("/v1/ledger/events"));
			const mark = performance.getEntriesByName("ledger-rendered")[0];
			return [api.responseEnd - api.startTime, mark.startTime - api.responseEnd];
		})()`))
		apiMS += tm[0]
		renderMS += tm[1]
		n++
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(n), "ms/first-page")
	b.ReportMetric(apiMS/float64(n), "ms-api/first-page")
	b.ReportMetric(renderMS/float64(n), "ms-render/first-page")
}
