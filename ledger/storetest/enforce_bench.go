package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// BenchStore is what BenchReserveSettle needs of a store.
type BenchStore interface {
	ledger.Agents
	ledger.Policies
	ledger.Enforcer
}

// BenchReserveSettle measures Reserve+Settle round trips with concurrency
// callers spread over chains independent delegation chains (see
// BenchChains). With chains = 1 every caller contends for the same
// policies, the worst case; with chains = concurrency no two callers share
// a policy. It reports round trips per second as "ops/s".
func BenchReserveSettle(b *testing.B, s BenchStore, concurrency, chains int) {
	agents := BenchChains(b, s, chains)
	b.ResetTimer()
	err := ReserveSettleN(context.Background(), s, agents, concurrency, int64(b.N))
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchChains creates chains delegation chains for ReserveSettleN and
// returns the IDs of the agents that spend. Each chain is an agent under a
// parent, each with a daily policy large enough never to deny, so every
// round trip locks and updates two policies, as a delegated agent's call
// does.
func BenchChains(tb testing.TB, s BenchStore, chains int) []string {
	tb.Helper()
	ctx := context.Background()
	agents := make([]string, chains)
	for i := range agents {
		parent, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "bench-parent-" + uuid.NewString()[:8], Owner: "bench"})
		if err != nil {
			tb.Fatal(err)
		}
		a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "bench-" + uuid.NewString()[:8], Owner: "bench", ParentID: parent.ID})
		if err != nil {
			tb.Fatal(err)
		}
		for _, id := range []string{parent.ID, a.ID} {
			if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: id, Limit: m("1000000000"), Currency: "USD", Window: policy.WindowDaily}); err != nil {
				tb.Fatal(err)
			}
		}
		agents[i] = a.ID
	}
	return agents
}

// ReserveSettleN makes n Reserve+Settle round trips of 0.001 USD with
// concurrency callers, caller w spending as agents[w%len(agents)]. A
// denial counts as a failure, since the benchmark budgets never run out;
// the first failure stops every caller and is returned.
func ReserveSettleN(ctx context.Context, s ledger.Enforcer, agents []string, concurrency int, n int64) error {
	if len(agents) == 0 {
		return fmt.Errorf("reserve+settle: no agents to spend as")
	}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agentID := agents[w%len(agents)]
			for next.Add(1) <= n && failed.Load() == nil {
				id := ledger.NewRequestID()
				d, err := s.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: agentID, Resource: "mcp:bench/tool", Operation: "tools/call", Amount: m("0.001")})
				if err == nil && !d.Allow {
					err = fmt.Errorf("reserve for agent %s denied: %s", agentID, d.Reason)
				}
				if err == nil {
					_, err = s.Settle(ctx, ledger.SettleRequest{RequestID: id, Amount: m("0.001")})
				}
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return err
	}
	return nil
}
