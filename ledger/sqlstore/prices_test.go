package sqlstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/policy"
)

// TestImportRollsBack makes the database refuse the last rule of an import
// that passed validation: none of the import may remain.
func TestImportRollsBack(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	if _, err := s.DB().ExecContext(ctx, `CREATE TRIGGER refuse_boom BEFORE INSERT ON prices
		WHEN NEW.resource = 'mcp:boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "mcp:a", PerCall: money.MustParse("1")}); err != nil {
		t.Fatal(err)
	}
	err := s.ImportPrices(ctx, []policy.PriceRule{
		{Resource: "mcp:a", PerCall: money.MustParse("2")},
		{Resource: "mcp:b", PerCall: money.MustParse("3")},
		{Resource: "mcp:boom", PerCall: money.MustParse("4")},
	})
	if err == nil || !strings.Contains(err.Error(), `write price rule "mcp:boom"`) || !strings.Contains(err.Error(), "boom refused") {
		t.Fatalf("ImportPrices = %v, want the refused write named", err)
	}
	all, err := s.ListPrices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].Resource != "mcp:a" || all[0].PerCall != money.MustParse("1") {
		t.Fatalf("after a failed import: %+v, want only mcp:a at 1", all)
	}
}
