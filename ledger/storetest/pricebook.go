package storetest

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

func testPricebook(t *testing.T, newStore Factory) {
	ctx := context.Background()
	amt := money.MustParse
	yes, no := true, false

	full := policy.PriceRule{
		Resource:              "llm:openai/gpt-4o*",
		Currency:              "EUR",
		PerCall:               amt("0.001"),
		InputPerMillion:       amt("2.50"),
		OutputPerMillion:      amt("10.00"),
		CachedInputPerMillion: amt("1.25"),
		CacheWritePerMillion:  amt("3.125"),
		ReasoningPerMillion:   amt("0.000000001"),
		PerUnit:               &policy.PerUnit{Path: "args.count", Price: amt("0.002")},
		ChargeErrors:          &no,
		ChargeRounds:          true,
	}
	same := func(a, b policy.PriceRule) bool {
		a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
		return reflect.DeepEqual(a, b)
	}

	t.Run("SetAndGet", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		got, err := s.SetPrice(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		if !same(got, full) || got.UpdatedAt.IsZero() {
			t.Errorf("SetPrice\n got %+v\nwant %+v", got, full)
		}
		read, err := s.GetPrice(ctx, full.Resource)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(read, got) {
			t.Errorf("GetPrice\n got %+v\nwant %+v", read, got)
		}
		if *read.PerUnit != *full.PerUnit || *read.ChargeErrors {
			t.Errorf("PerUnit %+v ChargeErrors %v", *read.PerUnit, *read.ChargeErrors)
		}
	})

	t.Run("DefaultsAndTriState", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, ce := range []*bool{nil, &yes, &no} {
			res := fmt.Sprintf("mcp:s/%v", ce != nil && *ce)
			if ce == nil {
				res = "mcp:s/nil"
			}
			if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: res, PerCall: amt("0.01"), ChargeErrors: ce}); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetPrice(ctx, res)
			if err != nil {
				t.Fatal(err)
			}
			if got.Currency != "USD" {
				t.Errorf("%s: currency %q, want the default USD", res, got.Currency)
			}
			if got.PerUnit != nil {
				t.Errorf("%s: PerUnit %+v, want nil", res, got.PerUnit)
			}
			switch {
			case ce == nil && got.ChargeErrors != nil,
				ce != nil && (got.ChargeErrors == nil || *got.ChargeErrors != *ce):
				t.Errorf("%s: ChargeErrors %v, want %v", res, got.ChargeErrors, ce)
			}
		}
	})

	t.Run("Replace", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.SetPrice(ctx, full); err != nil {
			t.Fatal(err)
		}
		repl := policy.PriceRule{Resource: full.Resource, PerCall: amt("0.5")}
		if _, err := s.SetPrice(ctx, repl); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetPrice(ctx, full.Resource)
		if err != nil {
			t.Fatal(err)
		}
		repl.Currency = "USD"
		if !same(got, repl) {
			t.Errorf("after replacing\n got %+v\nwant %+v", got, repl)
		}
		all, _ := s.ListPrices(ctx)
		if len(all) != 1 {
			t.Errorf("%d rules after replacing one, want 1", len(all))
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		tests := []struct {
			in  policy.PriceRule
			msg string
		}{
			{policy.PriceRule{Resource: "mcp:x", PerCall: amt("-1")}, `price rule "mcp:x": per_call: negative price -1.00`},
			{policy.PriceRule{Resource: "mcp:x", OutputPerMillion: amt("-0.5")}, `price rule "mcp:x": output_per_million: negative price -0.50`},
			{policy.PriceRule{Resource: ""}, `price rule "": resource: empty`},
			{policy.PriceRule{Resource: "mcp:x", Currency: "US"}, `price rule "mcp:x": currency: invalid currency "US": want a three-letter code such as USD`},
			{policy.PriceRule{Resource: "mcp:x", PerUnit: &policy.PerUnit{}}, `price rule "mcp:x": per_unit: path: empty (want a gjson path into the call arguments, e.g. count)`},
		}
		for _, tc := range tests {
			_, err := s.SetPrice(ctx, tc.in)
			wantErr(t, err, ledger.ErrInvalid, tc.msg)
		}
		all, err := s.ListPrices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 0 {
			t.Errorf("refused rules were written: %+v", all)
		}
	})

	t.Run("GetAndDeleteMissing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		_, err := s.GetPrice(ctx, "mcp:none")
		wantErr(t, err, ledger.ErrNotFound, `no price rule for "mcp:none"`)
		err = s.DeletePrice(ctx, "mcp:none")
		wantErr(t, err, ledger.ErrNotFound, `no price rule for "mcp:none"`)
		if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "mcp:a", PerCall: amt("1")}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeletePrice(ctx, "mcp:a"); err != nil {
			t.Fatal(err)
		}
		_, err = s.GetPrice(ctx, "mcp:a")
		wantErr(t, err, ledger.ErrNotFound, `no price rule for "mcp:a"`)
		// Patterns are stored as given: GetPrice does not match globs.
		if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "mcp:fs/*", PerCall: amt("1")}); err != nil {
			t.Fatal(err)
		}
		_, err = s.GetPrice(ctx, "mcp:fs/read")
		wantErr(t, err, ledger.ErrNotFound, `no price rule for "mcp:fs/read"`)
	})

	t.Run("ListOrder", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		empty, err := s.ListPrices(ctx)
		if err != nil || empty == nil || len(empty) != 0 {
			t.Errorf("ListPrices on an empty store = %#v, %v; want an empty, non-nil slice", empty, err)
		}
		for _, r := range []string{"mcp:search/*", "llm:openai/gpt-4o", "mcp:Search/x", "http:api/v1", "mcp:fs/read_file"} {
			if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: r, PerCall: amt("0.01")}); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.ListPrices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range all {
			got = append(got, r.Resource)
		}
		want := []string{"http:api/v1", "llm:openai/gpt-4o", "mcp:Search/x", "mcp:fs/read_file", "mcp:search/*"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ListPrices = %v, want %v (byte order)", got, want)
		}
	})

	t.Run("ImportAllOrNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		old := policy.PriceRule{Resource: "mcp:fs/read_file", PerCall: amt("0.001")}
		if _, err := s.SetPrice(ctx, old); err != nil {
			t.Fatal(err)
		}
		before, _ := s.ListPrices(ctx)

		bad := []policy.PriceRule{
			{Resource: "mcp:fs/read_file", PerCall: amt("0.5")},
			{Resource: "mcp:search/*", PerCall: amt("0.01")},
			{Resource: "mcp:broken", PerCall: amt("-2")},
		}
		err := s.ImportPrices(ctx, bad)
		wantErr(t, err, ledger.ErrInvalid, `entry 3: price rule "mcp:broken": per_call: negative price -2.00`)
		dup := []policy.PriceRule{
			{Resource: "mcp:a", PerCall: amt("1")},
			{Resource: "mcp:b", PerCall: amt("1")},
			{Resource: "mcp:a", PerCall: amt("2")},
		}
		err = s.ImportPrices(ctx, dup)
		wantErr(t, err, ledger.ErrInvalid, `entry 3: price rule "mcp:a": resource: duplicate of entry 1`)
		after, _ := s.ListPrices(ctx)
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("a refused import changed the pricebook:\nbefore %+v\nafter  %+v", before, after)
		}

		good := []policy.PriceRule{
			{Resource: "mcp:fs/read_file", PerCall: amt("0.002")},
			{Resource: "mcp:search/*", PerCall: amt("0.01"), PerUnit: &policy.PerUnit{Path: "count", Price: amt("0.002")}},
			full,
		}
		if err := s.ImportPrices(ctx, good); err != nil {
			t.Fatal(err)
		}
		all, err := s.ListPrices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 {
			t.Fatalf("%d rules after import, want 3", len(all))
		}
		for _, want := range good {
			got, err := s.GetPrice(ctx, want.Resource)
			if err != nil {
				t.Fatal(err)
			}
			if want.Currency == "" {
				want.Currency = "USD"
			}
			if !same(got, want) {
				t.Errorf("imported\n got %+v\nwant %+v", got, want)
			}
		}
		if err := s.ImportPrices(ctx, nil); err != nil {
			t.Errorf("empty import: %v", err)
		}
	})

	t.Run("ExactAmounts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, v := range []string{"0.000000001", "9223372036.854775807", "0.075", "123456.789012345"} {
			r := policy.PriceRule{Resource: "llm:x/" + v, InputPerMillion: amt(v)}
			if _, err := s.SetPrice(ctx, r); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetPrice(ctx, r.Resource)
			if err != nil {
				t.Fatal(err)
			}
			if got.InputPerMillion != amt(v) || got.InputPerMillion.String() != amt(v).String() {
				t.Errorf("price %s reads back as %s", v, got.InputPerMillion)
			}
		}
	})
}
