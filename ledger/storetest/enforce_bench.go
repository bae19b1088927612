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
// callers spread over chains independent delegation chains. Each chain is
// an agent under a parent, each with a daily policy large enough never to
// deny, so every round trip locks and updates two policies, as a delegated
// agent's call does. With chains = 1 every caller contends for the same
// policies, the worst case; with chains = concurrency no two callers share
// a policy. It reports round trips per second as "ops/s".
func BenchReserveSettle(b *testing.B, s BenchStore, concurrency, chains int) {
	ctx := context.Background()
	agents := make([]string, chains)
	for i := range agents {
		parent, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "bench-parent-" + uuid.NewString()[:8], Owner: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "bench-" + uuid.NewString()[:8], Owner: "bench", ParentID: parent.ID})
		if err != nil {
			b.Fatal(err)
		}
		for _, id := range []string{parent.ID, a.ID} {
			if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: id, Limit: m("1000000000"), Currency: "USD", Window: policy.WindowDaily}); err != nil {
				b.Fatal(err)
			}
		}
		agents[i] = a.ID
	}
	var next atomic.Int64
	var failed atomic.Value
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agentID := agents[w%chains]
			for next.Add(1) <= int64(b.N) {
				id := uuid.NewString()
				d, err := s.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: agentID, Resource: "mcp:bench/tool", Operation: "tools/call", Amount: m("0.001")})
				if err == nil && !d.Allow {
					err = fmt.Errorf("denied: %s", d.Reason)
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
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
