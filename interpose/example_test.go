package interpose_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/policy"
)

// A Go program meters its own spending with Engine.Do: each call of
// summarise is priced from the pricebook, checked against the agent's
// budget, run only if admitted, and recorded in the ledger.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "caracal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := sqlite.Open(ctx, filepath.Join(dir, "caracal.db"), sqlite.Options{SkipSchemaCheck: true})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if _, err := store.MigrateUp(ctx); err != nil {
		log.Fatal(err)
	}

	// A budget of 1.00 USD a day, and a price of 0.30 USD per call.
	agent, err := store.CreateAgent(ctx, ledger.NewAgent{Name: "summariser", Owner: "docs"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.CreatePolicy(ctx, ledger.NewPolicy{AgentID: agent.ID, Limit: money.MustParse("1.00"), Window: policy.WindowDaily}); err != nil {
		log.Fatal(err)
	}
	if _, err := store.SetPrice(ctx, policy.PriceRule{Resource: "go:summarise", Currency: "USD", PerCall: money.MustParse("0.30")}); err != nil {
		log.Fatal(err)
	}

	eng := interpose.New(interpose.Options{Store: store})
	summarise := func(ctx context.Context) (interpose.Result, error) {
		// Call the paid service here. A nil error charges the quoted price.
		return interpose.Result{}, nil
	}
	for i := 1; i <= 4; i++ {
		d, err := eng.Do(ctx, interpose.Call{AgentID: agent.ID, Resource: "go:summarise", Operation: "call"}, summarise)
		switch {
		case errors.Is(err, interpose.ErrDenied):
			fmt.Printf("call %d: refused (%s)\n", i, d.Code)
		case err != nil:
			log.Fatal(err)
		default:
			fmt.Printf("call %d: ran, %s %s left today\n", i, d.Remaining[0].Remaining, d.Remaining[0].Currency)
		}
	}

	rows, err := store.Summary(ctx, ledger.EventFilter{AgentIDs: []string{agent.ID}}, ledger.ByResource)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range rows {
		fmt.Printf("%s: %d events, %s %s charged, %d denied\n", r.Key, r.Events, r.Charged, r.Currency, r.Denied)
	}
	// Output:
	// call 1: ran, 0.70 USD left today
	// call 2: ran, 0.40 USD left today
	// call 3: ran, 0.10 USD left today
	// call 4: refused (budget_exceeded)
	// go:summarise: 4 events, 0.90 USD charged, 1 denied
}
