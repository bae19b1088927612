package api

import (
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

func (s *Server) listPrices(w http.ResponseWriter, r *http.Request, _ principal) error {
	rules, err := s.opts.Store.ListPrices(r.Context())
	if err != nil {
		return storeError("list prices", err)
	}
	return writeJSON(w, http.StatusOK, nonNil(rules))
}

// priceLookup is GET /v1/pricebook/{resource}: the rule stored for the
// pattern, else the rule that prices the resource (as `pricebook get`).
type priceLookup struct {
	policy.PriceRule
	// Matched is the resource asked for when the rule was found by
	// matching rather than stored under that exact pattern.
	Matched string `json:"matched,omitempty"`
}

func (s *Server) getPrice(w http.ResponseWriter, r *http.Request, _ principal) error {
	res := r.PathValue("resource")
	ctx := r.Context()
	rule, err := s.opts.Store.GetPrice(ctx, res)
	if err == nil {
		return writeJSON(w, http.StatusOK, priceLookup{PriceRule: rule})
	}
	if !errors.Is(err, ledger.ErrNotFound) {
		return storeError("read price", err)
	}
	rules, err := s.opts.Store.ListPrices(ctx)
	if err != nil {
		return storeError("list prices", err)
	}
	rule, ok := policy.MatchRule(rules, res)
	if !ok {
		return notFound("no price rule matches %q", res)
	}
	return writeJSON(w, http.StatusOK, priceLookup{PriceRule: rule, Matched: res})
}

// setPriceRequest is a rule's prices; at least one must be given (zero is
// a price: free).
type setPriceRequest struct {
	Currency              string          `json:"currency,omitempty"`
	PerCall               *money.Amount   `json:"per_call,omitempty"`
	InputPerMillion       *money.Amount   `json:"input_per_million,omitempty"`
	OutputPerMillion      *money.Amount   `json:"output_per_million,omitempty"`
	CachedInputPerMillion *money.Amount   `json:"cached_input_per_million,omitempty"`
	CacheWritePerMillion  *money.Amount   `json:"cache_write_per_million,omitempty"`
	ReasoningPerMillion   *money.Amount   `json:"reasoning_per_million,omitempty"`
	PerUnit               *policy.PerUnit `json:"per_unit,omitempty"`
	ChargeErrors          *bool           `json:"charge_errors,omitempty"`
}

func (s *Server) setPrice(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req setPriceRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	rule := policy.NormalizePriceRule(policy.PriceRule{Resource: r.PathValue("resource"), Currency: req.Currency,
		PerUnit: req.PerUnit, ChargeErrors: req.ChargeErrors})
	given := req.PerUnit != nil
	for _, f := range []struct {
		v   *money.Amount
		dst *money.Amount
	}{
		{req.PerCall, &rule.PerCall}, {req.InputPerMillion, &rule.InputPerMillion}, {req.OutputPerMillion, &rule.OutputPerMillion},
		{req.CachedInputPerMillion, &rule.CachedInputPerMillion}, {req.CacheWritePerMillion, &rule.CacheWritePerMillion},
		{req.ReasoningPerMillion, &rule.ReasoningPerMillion},
	} {
		if f.v != nil {
			*f.dst, given = *f.v, true
		}
	}
	if !given {
		return badRequest("give at least one price: per_call, input_per_million, output_per_million, cached_input_per_million, cache_write_per_million, reasoning_per_million or per_unit")
	}
	if err := policy.ValidatePriceRule(rule); err != nil {
		return badRequest("%v", err)
	}
	saved, err := s.opts.Store.SetPrice(r.Context(), rule)
	if err != nil {
		return storeError("set price", err)
	}
	s.opts.Engine.InvalidatePrices()
	return writeJSON(w, http.StatusOK, saved)
}

func (s *Server) deletePrice(w http.ResponseWriter, r *http.Request, _ principal) error {
	res := r.PathValue("resource")
	if err := s.opts.Store.DeletePrice(r.Context(), res); err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			return notFound("no price rule for %q", res)
		}
		return storeError("delete price", err)
	}
	s.opts.Engine.InvalidatePrices()
	return writeJSON(w, http.StatusOK, map[string]string{"deleted": res})
}

// importResult is POST /v1/pricebook/import's answer.
type importResult struct {
	Imported int                `json:"imported"`
	Rules    []policy.PriceRule `json:"rules"`
}

// importPrices takes a pricebook file (YAML, or JSON with a JSON content
// type) and sets every rule in one transaction, as `pricebook import`.
func (s *Server) importPrices(w http.ResponseWriter, r *http.Request, _ principal) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	format := ""
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		format = policy.FormatJSON
	}
	rules, err := policy.ParsePricebook(data, format)
	if err != nil {
		return badRequest("pricebook: %v", err)
	}
	if err := s.opts.Store.ImportPrices(r.Context(), rules); err != nil {
		return storeError("import prices", err)
	}
	s.opts.Engine.InvalidatePrices()
	return writeJSON(w, http.StatusOK, importResult{Imported: len(rules), Rules: nonNil(rules)})
}
