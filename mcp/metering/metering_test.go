package metering

import (
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/policy"
)

func TestRefusalResult(t *testing.T) {
	got := string(RefusalResult(Resource("fs", "read"), policy.Decision{Code: policy.CodeBudgetExceeded, Reason: "over", PolicyID: "p1", Price: money.MustParse("0.5"), Currency: "USD"}))
	const details = `{"code":"budget_exceeded","currency":"USD","policy_id":"p1","price":"0.50","reason":"over","remaining":[],"resource":"mcp:fs/read"}`
	want := `{"_meta":{"dev.caracal/decision":` + details + `},"content":[{"text":"Caracal refused this call (budget_exceeded): over. This is a spending-policy decision, not a transient error; retrying will be refused too.","type":"text"}],"isError":true,"structuredContent":` + details + `}`
	if got != want {
		t.Errorf("RefusalResult =\n%s\nwant\n%s", got, want)
	}
}

func TestDeclaredPrice(t *testing.T) {
	tests := []struct {
		name, tool string
		want       *policy.PriceRule
	}{
		{"string price", `{"_meta":{"dev.caracal/price":{"price":"0.01"}}}`, &policy.PriceRule{Resource: "r", Currency: "USD", PerCall: money.MustParse("0.01")}},
		{"per_call number", `{"_meta":{"dev.caracal/price":{"per_call":0.02,"currency":"EUR"}}}`, &policy.PriceRule{Resource: "r", Currency: "EUR", PerCall: money.MustParse("0.02")}},
		{"per unit", `{"_meta":{"dev.caracal/price":{"per_unit":{"path":"n","price":"0.002"}}}}`, &policy.PriceRule{Resource: "r", Currency: "USD", PerUnit: &policy.PerUnit{Path: "n", Price: money.MustParse("0.002")}}},
		{"no meta", `{"name":"x"}`, nil},
		{"bad price", `{"_meta":{"dev.caracal/price":{"price":"abc"}}}`, nil},
		{"per unit without path", `{"_meta":{"dev.caracal/price":{"per_unit":{"price":"1"}}}}`, nil},
		{"nothing priced", `{"_meta":{"dev.caracal/price":{"currency":"USD"}}}`, nil},
	}
	for _, tt := range tests {
		got := DeclaredPrice("r", gjson.Parse(tt.tool))
		switch {
		case (got == nil) != (tt.want == nil):
			t.Errorf("%s: DeclaredPrice = %+v, want %+v", tt.name, got, tt.want)
		case got != nil && (got.Resource != tt.want.Resource || got.Currency != tt.want.Currency || got.PerCall != tt.want.PerCall ||
			(got.PerUnit == nil) != (tt.want.PerUnit == nil) || (got.PerUnit != nil && *got.PerUnit != *tt.want.PerUnit)):
			t.Errorf("%s: DeclaredPrice = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
