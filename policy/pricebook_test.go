package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/money"
)

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		pattern, resource string
		want              bool
	}{
		{"mcp:fs/read_file", "mcp:fs/read_file", true},
		{"mcp:fs/read_file", "mcp:fs/read_files", false},
		{"mcp:fs/read_file", "mcp:fs/read_fil", false},
		{"mcp:fs/*", "mcp:fs/read_file", true},
		{"mcp:fs/*", "mcp:fs/", true},
		{"mcp:fs/*", "mcp:fs", false},
		{"mcp:*", "mcp:fs/read_file", true}, // `*` crosses `/`
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"", "", true},
		{"", "x", false},
		{"**", "x", true},
		{"llm:openai/gpt-4o*", "llm:openai/gpt-4o", true},
		{"llm:openai/gpt-4o*", "llm:openai/gpt-4o-mini", true},
		{"llm:openai/gpt-4o*", "llm:openai/gpt-4", false},
		{"*/read_file", "mcp:fs/read_file", true},
		{"*/read_file", "mcp:fs/read_file2", false},
		{"mcp:*/read_*", "mcp:fs/read_file", true},
		{"mcp:*/read_*", "mcp:fs/write_file", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbYcZ", false},
		{"a*b*c", "acb", false},
		{"a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, // backtracking stays linear
		{"a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", true},
		{"*a", "ba", true},
		{"*a", "ab", false},
		// Only `*` is special.
		{"mcp:fs/?", "mcp:fs/x", false},
		{"mcp:fs/?", "mcp:fs/?", true},
		{"mcp:[a]", "mcp:a", false},
		{"mcp:[a]", "mcp:[a]", true},
		{`mcp:\*`, `mcp:\x`, true},
		{"MCP:fs/*", "mcp:fs/x", false}, // case-sensitive
	}
	for _, tt := range tests {
		if got := MatchPattern(tt.pattern, tt.resource); got != tt.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", tt.pattern, tt.resource, got, tt.want)
		}
	}
}

func TestMatchRule(t *testing.T) {
	rules := func(patterns ...string) []PriceRule {
		out := make([]PriceRule, len(patterns))
		for i, p := range patterns {
			out[i] = PriceRule{Resource: p, Currency: "USD"}
		}
		return out
	}
	tests := []struct {
		name     string
		rules    []PriceRule
		resource string
		want     string // "" for no match
	}{
		{"no rules", nil, "mcp:fs/x", ""},
		{"no match", rules("mcp:search/*"), "mcp:fs/x", ""},
		{"exact beats glob", rules("mcp:fs/*", "mcp:fs/read_file", "*"), "mcp:fs/read_file", "mcp:fs/read_file"},
		{"exact beats a glob matching empty with equal literals", rules("mcp:fs/read_file*", "mcp:fs/read_file"), "mcp:fs/read_file", "mcp:fs/read_file"},
		{"exact beats a glob matching empty, other order", rules("mcp:fs/read_file", "mcp:fs/read_file*"), "mcp:fs/read_file", "mcp:fs/read_file"},
		{"more literals win", rules("llm:openai/gpt-4o*", "llm:openai/gpt-4o-mini*", "llm:*"), "llm:openai/gpt-4o-mini-2024", "llm:openai/gpt-4o-mini*"},
		{"more literals win wherever the star is", rules("*/read_file", "mcp:fs/*"), "mcp:fs/read_file", "*/read_file"},
		{"catch-all is the fallback", rules("*", "mcp:search/*"), "mcp:fs/read_file", "*"},
		{"equal literals: longer pattern wins", rules("mcp:a*b", "mcp:a*b*"), "mcp:aXb", "mcp:a*b*"},
		{"equal literals: longer pattern wins, other order", rules("mcp:a*b*", "mcp:a*b"), "mcp:aXb", "mcp:a*b*"},
		{"full tie: lexical order", rules("mcp:*x/y", "mcp:x*/y"), "mcp:x/y", "mcp:*x/y"},
		{"full tie: lexical order, other order", rules("mcp:x*/y", "mcp:*x/y"), "mcp:x/y", "mcp:*x/y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := MatchRule(tt.rules, tt.resource)
			if tt.want == "" {
				if ok {
					t.Fatalf("MatchRule = %q, want no match", got.Resource)
				}
				return
			}
			if !ok || got.Resource != tt.want {
				t.Fatalf("MatchRule = %q, %v; want %q", got.Resource, ok, tt.want)
			}
		})
	}
}

func TestCost(t *testing.T) {
	llm := PriceRule{Resource: "llm:openai/gpt-4o*", Currency: "USD",
		InputPerMillion: amt("2.50"), OutputPerMillion: amt("10.00"),
		CachedInputPerMillion: amt("1.25"), CacheWritePerMillion: amt("3.125"), ReasoningPerMillion: amt("12")}
	search := PriceRule{Resource: "mcp:search/*", Currency: "USD", PerCall: amt("0.01"),
		PerUnit: &PerUnit{Path: "count", Price: amt("0.002")}}
	half := PriceRule{Resource: "r", Currency: "USD", InputPerMillion: amt("0.0005"), OutputPerMillion: amt("0.0005")}
	tests := []struct {
		name string
		rule PriceRule
		args string
		tok  Tokens
		want string
	}{
		{"per call only", PriceRule{Resource: "r", PerCall: amt("0.001")}, `{}`, Tokens{}, "0.001"},
		{"zero rule", PriceRule{Resource: "r"}, `{"count":5}`, Tokens{Input: 1000}, "0"},
		// 1,234,567 × 2.50/M = 3.0864175 and 89 × 10.00/M = 0.00089.
		{"tokens exact", llm, ``, Tokens{Input: 1_234_567, Output: 89}, "3.0873075"},
		{"every token class", llm, ``, Tokens{Input: 1_000_000, Output: 1_000_000, CachedRead: 1_000_000, CacheWrite: 1_000_000, Reasoning: 1_000_000}, "28.875"},
		{"one cheap token is exact", PriceRule{Resource: "r", InputPerMillion: amt("0.075")}, ``, Tokens{Input: 1}, "0.000000075"},
		// Two half nano-units are one nano-unit: the sum is rounded once,
		// not each class on its own (which would give two).
		{"rounded once", half, ``, Tokens{Input: 1, Output: 1}, "0.000000001"},
		{"half rounds up", half, ``, Tokens{Input: 1}, "0.000000001"},
		{"below half rounds down", PriceRule{Resource: "r", InputPerMillion: amt("0.000499999")}, ``, Tokens{Input: 1}, "0"},
		{"sub-nano per-unit and token parts rounded together", PriceRule{Resource: "r", InputPerMillion: amt("0.0004"),
			PerUnit: &PerUnit{Path: "n", Price: amt("0.000000001")}}, `{"n":0.1}`, Tokens{Input: 1}, "0.000000001"},
		{"per unit integer", search, `{"query":"x","count":10}`, Tokens{}, "0.03"},
		{"per unit decimal", search, `{"count":2.5}`, Tokens{}, "0.015"},
		{"per unit exponent", search, `{"count":1e2}`, Tokens{}, "0.21"},
		{"per unit negative exponent", search, `{"count":25E-1}`, Tokens{}, "0.015"},
		{"per unit string", search, `{"count":"7"}`, Tokens{}, "0.024"},
		{"per unit missing path", search, `{"query":"x"}`, Tokens{}, "0.01"},
		{"per unit null", search, `{"count":null}`, Tokens{}, "0.01"},
		{"per unit no args", search, ``, Tokens{}, "0.01"},
		{"per unit nested path", PriceRule{Resource: "r", PerUnit: &PerUnit{Path: "opts.pages", Price: amt("0.5")}}, `{"opts":{"pages":3}}`, Tokens{}, "1.50"},
		{"per unit rounds half up", PriceRule{Resource: "r", PerUnit: &PerUnit{Path: "n", Price: amt("0.000000001")}}, `{"n":0.5}`, Tokens{}, "0.000000001"},
		{"per unit exactness beyond float", PriceRule{Resource: "r", PerUnit: &PerUnit{Path: "n", Price: amt("1")}}, `{"n":9007199254.740993}`, Tokens{}, "9007199254.740993"},
		{"per call plus tokens plus units", PriceRule{Resource: "r", PerCall: amt("0.10"), OutputPerMillion: amt("10"),
			PerUnit: &PerUnit{Path: "count", Price: amt("0.002")}}, `{"count":3}`, Tokens{Output: 123}, "0.10723"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Cost(tt.rule, []byte(tt.args), tt.tok)
			if err != nil {
				t.Fatal(err)
			}
			if got != amt(tt.want) {
				t.Fatalf("Cost = %s, want %s", got, amt(tt.want))
			}
		})
	}
}

func TestCostErrors(t *testing.T) {
	search := PriceRule{Resource: "mcp:search/*", PerUnit: &PerUnit{Path: "count", Price: amt("0.002")}}
	max := PriceRule{Resource: "r", InputPerMillion: money.Max}
	tests := []struct {
		name     string
		rule     PriceRule
		args     string
		tok      Tokens
		want     string
		overflow bool
	}{
		{"negative quantity", search, `{"count":-1}`, Tokens{}, `price rule "mcp:search/*": argument "count" must be a non-negative number (a JSON number or a decimal string with at most 9 fractional digits), got -1`, false},
		{"boolean quantity", search, `{"count":true}`, Tokens{}, `price rule "mcp:search/*": argument "count" must be a non-negative number (a JSON number or a decimal string with at most 9 fractional digits), got a boolean`, false},
		{"object quantity", search, `{"count":{"n":1}}`, Tokens{}, `price rule "mcp:search/*": argument "count" must be a non-negative number (a JSON number or a decimal string with at most 9 fractional digits), got an object`, false},
		{"array quantity", search, `{"count":[1]}`, Tokens{}, `price rule "mcp:search/*": argument "count" must be a non-negative number (a JSON number or a decimal string with at most 9 fractional digits), got an array`, false},
		{"string garbage", search, `{"count":"lots"}`, Tokens{}, `price rule "mcp:search/*": argument "count" must be a non-negative number (a JSON number or a decimal string with at most 9 fractional digits), got "lots" (invalid amount "lots": unexpected character 'l')`, false},
		{"too precise", search, `{"count":0.0000000001}`, Tokens{}, `price rule "mcp:search/*": argument "count" must be a non-negative number (a JSON number or a decimal string with at most 9 fractional digits), got 0.0000000001 (invalid amount "0.0000000001": more than 9 decimal places)`, false},
		{"too precise exponent", search, `{"count":1e-10}`, Tokens{}, `price rule "mcp:search/*": argument "count" must be a non-negative number (a JSON number or a decimal string with at most 9 fractional digits), got 1e-10 (invalid number "1e-10": more than 9 decimal places)`, false},
		{"huge exponent", search, `{"count":1e30}`, Tokens{}, `price rule "mcp:search/*": argument "count" must be a non-negative number (a JSON number or a decimal string with at most 9 fractional digits), got 1e30 (invalid number "1e30": amount out of range)`, true},
		{"invalid JSON", search, `{"count":`, Tokens{}, `price rule "mcp:search/*": argument "count" must be a non-negative number (a JSON number or a decimal string with at most 9 fractional digits), got arguments that are not valid JSON`, false},
		{"negative tokens", max, ``, Tokens{Output: -1}, `price rule "r": negative output token count -1`, false},
		{"negative price", PriceRule{Resource: "r", OutputPerMillion: amt("-1")}, ``, Tokens{Output: 1}, `price rule "r": output_per_million: negative price -1.00`, false},
		{"negative per call", PriceRule{Resource: "r", PerCall: amt("-1")}, ``, Tokens{}, `price rule "r": per_call: negative price -1.00`, false},
		{"negative per unit", PriceRule{Resource: "r", PerUnit: &PerUnit{Path: "n", Price: amt("-1")}}, `{"n":1}`, Tokens{}, `price rule "r": per_unit: price: negative price -1.00`, false},
		{"token overflow", max, ``, Tokens{Input: 2_000_000}, `price rule "r": cost: amount out of range`, true},
		{"128-bit overflow", PriceRule{Resource: "r", InputPerMillion: money.Max, OutputPerMillion: money.Max}, ``, Tokens{Input: 1 << 62, Output: 1 << 62}, `price rule "r": cost: amount out of range`, true},
		{"per call overflow", PriceRule{Resource: "r", PerCall: money.Max, InputPerMillion: amt("1")}, ``, Tokens{Input: 1}, `price rule "r": cost: amount out of range`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Cost(tt.rule, []byte(tt.args), tt.tok)
			if err == nil {
				t.Fatalf("Cost = %s, want error %q", got, tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("error = %q\nwant    %q", err, tt.want)
			}
			var ae *ArgumentError
			if errors.As(err, &ae) != strings.Contains(tt.want, "argument ") {
				t.Fatalf("errors.As(*ArgumentError) = %v for %q", !strings.Contains(tt.want, "argument "), err)
			}
			if errors.Is(err, money.ErrOverflow) != tt.overflow {
				t.Fatalf("errors.Is(ErrOverflow) = %v, want %v", !tt.overflow, tt.overflow)
			}
		})
	}
}

func TestQuantity(t *testing.T) {
	tests := []struct {
		args, path, want string
	}{
		{`{"count":3}`, "count", "3"},
		{`{"count":-0}`, "count", "0"},
		{`{"count":0.000000001}`, "count", "0.000000001"},
		{`{"count":1.5E+2}`, "count", "150"},
		{`{"count":123.456e-3}`, "count", "0.123456"},
		{`{"count":100000000000e-20}`, "count", "0.000000001"},
		{`{"count":" 12.5 "}`, "count", "12.5"},
		{`{"items":[1,2,3]}`, "items.#", "3"},
		{`{"a":{"b":[{"c":4}]}}`, "a.b.0.c", "4"},
		{`[]`, "count", "0"},
	}
	for _, tt := range tests {
		got, err := Quantity([]byte(tt.args), tt.path)
		if err != nil || got != amt(tt.want) {
			t.Errorf("Quantity(%s, %q) = %s, %v; want %s", tt.args, tt.path, got, err, tt.want)
		}
	}
}

func TestValidatePriceRule(t *testing.T) {
	ok := PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: amt("0.01")}
	tests := []struct {
		name string
		edit func(*PriceRule)
		want string // "" for valid
	}{
		{"valid", func(*PriceRule) {}, ""},
		{"zero prices are valid", func(r *PriceRule) { r.PerCall = 0 }, ""},
		{"per unit", func(r *PriceRule) { r.PerUnit = &PerUnit{Path: "count", Price: amt("1")} }, ""},
		{"empty resource", func(r *PriceRule) { r.Resource = "" }, `price rule "": resource: empty`},
		{"space in resource", func(r *PriceRule) { r.Resource = "mcp:fs/read file" }, `price rule "mcp:fs/read file": resource: "mcp:fs/read file" contains a space or control character`},
		{"empty currency", func(r *PriceRule) { r.Currency = "" }, `price rule "mcp:fs/*": currency: invalid currency "": want a three-letter code such as USD`},
		{"bad currency", func(r *PriceRule) { r.Currency = "dollars" }, `price rule "mcp:fs/*": currency: invalid currency "dollars": want a three-letter code such as USD`},
		{"negative per call", func(r *PriceRule) { r.PerCall = amt("-1") }, `price rule "mcp:fs/*": per_call: negative price -1.00`},
		{"negative input", func(r *PriceRule) { r.InputPerMillion = amt("-0.5") }, `price rule "mcp:fs/*": input_per_million: negative price -0.50`},
		{"negative output", func(r *PriceRule) { r.OutputPerMillion = amt("-2") }, `price rule "mcp:fs/*": output_per_million: negative price -2.00`},
		{"negative cached", func(r *PriceRule) { r.CachedInputPerMillion = amt("-2") }, `price rule "mcp:fs/*": cached_input_per_million: negative price -2.00`},
		{"negative cache write", func(r *PriceRule) { r.CacheWritePerMillion = amt("-2") }, `price rule "mcp:fs/*": cache_write_per_million: negative price -2.00`},
		{"negative reasoning", func(r *PriceRule) { r.ReasoningPerMillion = amt("-2") }, `price rule "mcp:fs/*": reasoning_per_million: negative price -2.00`},
		{"per unit without path", func(r *PriceRule) { r.PerUnit = &PerUnit{Price: amt("1")} }, `price rule "mcp:fs/*": per_unit: path: empty (want a gjson path into the call arguments, e.g. count)`},
		{"per unit negative", func(r *PriceRule) { r.PerUnit = &PerUnit{Path: "n", Price: amt("-1")} }, `price rule "mcp:fs/*": per_unit: price: negative price -1.00`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.edit(&r)
			err := ValidatePriceRule(r)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v\nwant    %q", err, tt.want)
			}
		})
	}
	if got := NormalizePriceRule(PriceRule{Resource: "x"}); got.Currency != "USD" {
		t.Fatalf("NormalizePriceRule currency = %q", got.Currency)
	}
	if got := NormalizePriceRule(PriceRule{Resource: "x", Currency: "EUR"}); got.Currency != "EUR" {
		t.Fatalf("NormalizePriceRule currency = %q", got.Currency)
	}
}

func TestValidateResourcePattern(t *testing.T) {
	for _, p := range []string{"mcp:fs/read_file", "*", "llm:openai/gpt-4o*", "http:api/v1/*"} {
		if err := ValidateResourcePattern(p); err != nil {
			t.Errorf("ValidateResourcePattern(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"", " ", "a\tb", "a\nb", "x\x7f"} {
		if err := ValidateResourcePattern(p); err == nil {
			t.Errorf("ValidateResourcePattern(%q) = nil", p)
		} else if !strings.Contains(err.Error(), "empty") && !strings.Contains(err.Error(), "control") {
			t.Errorf("ValidateResourcePattern(%q) = %v", p, err)
		}
	}
}

func BenchmarkCost(b *testing.B) {
	r := PriceRule{Resource: "mcp:search/*", PerCall: amt("0.01"), InputPerMillion: amt("2.5"),
		OutputPerMillion: amt("10"), PerUnit: &PerUnit{Path: "count", Price: amt("0.002")}}
	args := []byte(`{"query":"caracal budgets","count":25}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Cost(r, args, Tokens{Input: 1234, Output: 567}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatchRule(b *testing.B) {
	rules := []PriceRule{{Resource: "*"}, {Resource: "mcp:fs/*"}, {Resource: "mcp:fs/read_file"},
		{Resource: "mcp:search/*"}, {Resource: "llm:openai/gpt-4o*"}, {Resource: "llm:openai/gpt-4o-mini*"},
		{Resource: "llm:anthropic/claude-*"}, {Resource: "http:*"}}
	b.ReportAllocs()
	for b.Loop() {
		if r, ok := MatchRule(rules, "llm:openai/gpt-4o-mini-2024-07-18"); !ok || r.Resource != "llm:openai/gpt-4o-mini*" {
			b.Fatal(r.Resource)
		}
	}
}

func TestBestMatch(t *testing.T) {
	tests := []struct {
		patterns []string
		s        string
		want     int
		ok       bool
	}{
		{[]string{"gpt*4o", "gpt*4o*"}, "gpt-4o", 1, true},
		{[]string{"gpt*4o*", "gpt*4o"}, "gpt-4o", 0, true},
		{[]string{"gpt-4o*", "gpt-4o-mini*"}, "gpt-4o-mini", 1, true},
		{[]string{"*", "gpt-4o"}, "gpt-4o", 1, true},
		{[]string{"b*", "a*"}, "ab", 1, true},
		{[]string{"x*"}, "gpt-4o", -1, false},
	}
	for _, tt := range tests {
		got, ok := BestMatch(tt.patterns, tt.s)
		if got != tt.want || ok != tt.ok {
			t.Errorf("BestMatch(%q, %q) = %d, %v; want %d, %v", tt.patterns, tt.s, got, ok, tt.want, tt.ok)
		}
	}
}
