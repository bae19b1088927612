package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/policy"
)

// Environment of the spending child processes of TestTwoProcessesNeverOverspend.
const (
	spendURLEnv   = "CARACAL_SPEND_CHILD_URL"
	spendAgentEnv = "CARACAL_SPEND_CHILD_AGENT"
	spendStartEnv = "CARACAL_SPEND_CHILD_START"
)

// spendersPerProcess is how many concurrent callers each process runs.
const spendersPerProcess = 250

// openEnforceStore opens and migrates the PostgreSQL database at url.
func openEnforceStore(t testing.TB, url string, maxConns int32) *sqlstore.Store {
	t.Helper()
	ctx := context.Background()
	s, err := postgres.Open(ctx, url, postgres.Options{SkipSchemaCheck: true, MaxConns: maxConns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTwoProcessesNeverOverspend runs two OS processes (this test binary
// again, in child mode) of 250 concurrent callers each, all spending 1.00
// against one 100.00 budget in one PostgreSQL database: exactly 100 calls
// succeed in total and the ledger sums to exactly 100.00.
func TestTwoProcessesNeverOverspend(t *testing.T) {
	if os.Getenv(spendURLEnv) != "" {
		spendChild(t)
		return
	}
	url := pgtest.URL(t)
	s := openEnforceStore(t, url, 4)
	ctx := context.Background()
	a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "two-process", Owner: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: money.MustParse("100.00"), Currency: "USD", Window: policy.WindowTotal}); err != nil {
		t.Fatal(err)
	}
	// Both children wait for the same instant so their callers overlap.
	start := time.Now().Add(3 * time.Second).UnixNano()
	type child struct {
		cmd    *exec.Cmd
		stdout bytes.Buffer
		stderr bytes.Buffer
	}
	children := make([]*child, 2)
	for i := range children {
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestTwoProcessesNeverOverspend$", "-test.count=1", "-test.v")}
		c.cmd.Env = append(os.Environ(), spendURLEnv+"="+url, spendAgentEnv+"="+a.ID, spendStartEnv+"="+strconv.FormatInt(start, 10))
		c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children[i] = c
	}
	total := 0
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s%s", i, err, c.stdout.String(), c.stderr.String())
		}
		n := -1
		sc := bufio.NewScanner(&c.stdout)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "allowed="); ok {
				n, _ = strconv.Atoi(v)
			}
		}
		if n < 0 {
			t.Fatalf("child %d printed no count:\n%s", i, c.stdout.String())
		}
		t.Logf("process %d: %d of %d calls allowed", i, n, spendersPerProcess)
		total += n
	}
	if total != 100 {
		t.Fatalf("%d calls allowed across both processes, want exactly 100", total)
	}
	var sum money.Amount
	charged := 0
	if err := s.QueryEvents(ctx, ledger.EventFilter{AgentIDs: []string{a.ID}, Outcome: policy.OutcomeCharged}, func(ev ledger.Event) error {
		charged++
		sum += ev.Amount
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if charged != 100 || sum != money.MustParse("100.00") {
		t.Fatalf("ledger holds %d charges summing %s, want 100 summing 100.00", charged, sum)
	}
}

// spendChild is the child side: spendersPerProcess callers each reserve
// and settle 1.00, then the count of allowed calls is printed.
func spendChild(t *testing.T) {
	s := openEnforceStore(t, os.Getenv(spendURLEnv), 16)
	agentID := os.Getenv(spendAgentEnv)
	at, err := strconv.ParseInt(os.Getenv(spendStartEnv), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(time.Unix(0, at)))
	ctx := context.Background()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, spendersPerProcess)
	for i := 0; i < spendersPerProcess; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := uuid.NewString()
			d, err := s.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: agentID, Resource: "mcp:test/tool", Amount: money.MustParse("1.00")})
			if err != nil {
				errs <- err
				return
			}
			if !d.Allow {
				if d.Code != policy.CodeBudgetExceeded {
					errs <- fmt.Errorf("denied with %s: %s", d.Code, d.Reason)
				}
				return
			}
			allowed.Add(1)
			if _, err := s.Settle(ctx, ledger.SettleRequest{RequestID: id, Amount: money.MustParse("1.00")}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	fmt.Printf("allowed=%d\n", allowed.Load())
}
