// Package metering holds what every MCP front of Caracal writes the same
// way: the resource a tool call is metered as, the CallToolResult of a
// refused call with its decision in structuredContent and _meta, the price
// a listed tool carries in _meta, and the reading of a price a trusted
// server declares. The relay (package mcp) and the in-process middleware
// (package mcp/middleware) both use it, so a host sees the same shapes from
// either.
package metering

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

const (
	// PriceMetaKey is the tools/list _meta key holding a tool's price.
	PriceMetaKey = "dev.caracal/price"
	// DecisionMetaKey is the CallToolResult _meta key holding a refusal's
	// decision.
	DecisionMetaKey = "dev.caracal/decision"
)

// Resource is the resource a call to tool on server is metered as.
func Resource(server, tool string) string { return "mcp:" + server + "/" + tool }

// Refusal returns the text and the details of the CallToolResult for a
// call dec refused: the details are the decision (code, reason, resource,
// price, currency, remaining and, when one decided, policy_id).
func Refusal(resource string, dec policy.Decision) (text string, details map[string]any) {
	reason := strings.TrimSpace(strings.ReplaceAll(dec.Reason, "\n", " "))
	if reason == "" {
		reason = string(dec.Code)
	}
	if dec.Code == policy.CodeUnavailable {
		text = fmt.Sprintf("Caracal could not check this call's budget, so the call was not made (%s): %s. The operator has been told; do not retry this call.", dec.Code, reason)
	} else {
		text = fmt.Sprintf("Caracal refused this call (%s): %s. This is a spending-policy decision, not a transient error; retrying will be refused too.", dec.Code, reason)
	}
	details = map[string]any{
		"code":      dec.Code,
		"reason":    reason,
		"resource":  resource,
		"price":     dec.Price,
		"currency":  dec.Currency,
		"remaining": dec.Remaining,
	}
	if dec.Remaining == nil {
		details["remaining"] = []policy.Remaining{}
	}
	if dec.PolicyID != "" {
		details["policy_id"] = dec.PolicyID
	}
	return text, details
}

// ToolErrorResult is the JSON of a CallToolResult with isError set, text
// as its content and, when details is not nil, details in
// structuredContent and in _meta[DecisionMetaKey].
func ToolErrorResult(text string, details any) []byte {
	body := map[string]any{
		"content": []map[string]string{{"type": "text", "text": text}},
		"isError": true,
	}
	if details != nil {
		body["structuredContent"] = details
		body["_meta"] = map[string]any{DecisionMetaKey: details}
	}
	b, _ := json.Marshal(body)
	return b
}

// RefusalResult is the JSON of the CallToolResult for a call dec refused.
func RefusalResult(resource string, dec policy.Decision) []byte {
	return ToolErrorResult(Refusal(resource, dec))
}

// PriceMeta is the value of _meta[PriceMetaKey] on a listed tool.
type PriceMeta struct {
	Price    string          `json:"price"`
	Currency string          `json:"currency"`
	Unpriced bool            `json:"unpriced"`
	PerUnit  *policy.PerUnit `json:"per_unit,omitempty"`
	Declared bool            `json:"declared,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// NewPriceMeta is the price meta of a tool Meter.Quote priced as q, or
// failed to price with err. The error itself stays with the caller, for
// its log: it can name the database.
func NewPriceMeta(q interpose.Quote, err error) PriceMeta {
	if err != nil {
		return PriceMeta{Unpriced: true, Error: "Caracal could not read this tool's price"}
	}
	pm := PriceMeta{Price: q.Price.String(), Currency: q.Currency, Unpriced: q.Unpriced, Declared: q.Declared}
	if q.Rule != nil && q.Rule.PerUnit != nil {
		pm.PerUnit = q.Rule.PerUnit
	}
	return pm
}

// declaredPath is where a listed tool declares its price.
var declaredPath = "_meta." + gjson.Escape(PriceMetaKey)

// DeclaredPrice reads the price a trusted server declared in a listed
// tool's _meta[PriceMetaKey]:
// {"price": "0.01", "currency": "USD", "per_unit": {"path": "count", "price": "0.002"}}
// ("per_call" is accepted for "price"). Anything unreadable declares
// nothing (nil).
func DeclaredPrice(resource string, tool gjson.Result) *policy.PriceRule {
	v := tool.Get(declaredPath)
	if !v.IsObject() {
		return nil
	}
	r := &policy.PriceRule{Resource: resource, Currency: v.Get("currency").String()}
	if r.Currency == "" {
		r.Currency = money.DefaultCurrency
	}
	price := v.Get("price")
	if !price.Exists() {
		price = v.Get("per_call")
	}
	ok := false
	if price.Exists() {
		a, err := parseAmount(price)
		if err != nil {
			return nil
		}
		r.PerCall, ok = a, true
	}
	if pu := v.Get("per_unit"); pu.IsObject() {
		a, err := parseAmount(pu.Get("price"))
		if err != nil || pu.Get("path").String() == "" {
			return nil
		}
		r.PerUnit, ok = &policy.PerUnit{Path: pu.Get("path").String(), Price: a}, true
	}
	if !ok {
		return nil
	}
	return r
}

// parseAmount reads a price written as a JSON string ("0.01") or number.
func parseAmount(v gjson.Result) (money.Amount, error) {
	switch v.Type {
	case gjson.String:
		return money.Parse(v.Str)
	case gjson.Number:
		return money.Parse(v.Raw)
	}
	return 0, fmt.Errorf("price %s is not a decimal", v.Raw)
}
