package policy

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParsePricebook feeds arbitrary files to the pricebook loader: it must
// not panic, every error must say what is wrong where (a malformed file, a
// numbered entry or the format), and whatever it accepts must be valid,
// free of repeated resources, and survive MarshalPricebook unchanged.
func FuzzParsePricebook(f *testing.F) {
	for _, s := range []string{
		"prices:\n  - resource: \"mcp:fs/read_file\"\n    per_call: \"0.001\"\n  - resource: \"mcp:search/*\"\n    per_call: 0.01\n    per_unit: {path: \"count\", price: \"0.002\"}\n",
		"prices:\n  - resource: \"llm:openai/gpt-4o*\"\n    currency: EUR\n    input_per_million: \"2.50\"\n    output_per_million: 10\n    cached_input_per_million: \"1.25\"\n    cache_write_per_million: \"3.125\"\n    reasoning_per_million: \"10.00\"\n    charge_errors: false\n",
		`{"prices":[{"resource":"http:x","per_call":"1"},{"resource":"http:y","per_call":1e3}]}`,
		"prices:\n  - &a {resource: a, per_call: \"1\"}\n  - *a\n", "prices: null\n", "prices: []\n", "\xef\xbb\xbfprices: []\n",
		"prices:\n  - resource: x\n    per_token: 1\n", "a: b\n---\nc: d\n", "", "[1,2]", "prices: {}\n",
		"prices:\n  - resource: x\n    per_call: \"0.0000000001\"\n", "prices:\n  - resource: \"a b\"\n",
	} {
		for _, format := range []uint8{0, 1, 2} {
			f.Add([]byte(s), format)
		}
	}
	formats := []string{"", FormatYAML, FormatJSON, "toml"}
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		format := formats[int(sel)%len(formats)]
		rules, err := ParsePricebook(data, format)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "malformed pricebook: ") && !strings.HasPrefix(msg, "pricebook entry ") && !strings.HasPrefix(msg, "invalid pricebook format ") {
				t.Fatalf("ParsePricebook error %q does not say where the problem is", msg)
			}
			return
		}
		seen := map[string]bool{}
		for i, r := range rules {
			if err := ValidatePriceRule(r); err != nil {
				t.Fatalf("accepted rule %d is invalid: %v", i+1, err)
			}
			if seen[r.Resource] {
				t.Fatalf("accepted resource %q twice", r.Resource)
			}
			seen[r.Resource] = true
		}
		for _, out := range []string{FormatYAML, FormatJSON} {
			b, err := MarshalPricebook(rules, out)
			if err != nil {
				t.Fatalf("MarshalPricebook(%s) of accepted rules: %v", out, err)
			}
			back, err := ParsePricebook(b, out)
			if err != nil {
				t.Fatalf("ParsePricebook(MarshalPricebook(%s)) = %v\n%s", out, err, b)
			}
			if !reflect.DeepEqual(back, rules) {
				t.Fatalf("%s round trip changed the rules:\n%+v\n%+v\n%s", out, rules, back, b)
			}
		}
	})
}

// refMatch is glob matching by dynamic programming over bytes: m[i][j]
// says whether pattern[:i] matches s[:j].
func refMatch(pattern, s string) bool {
	prev := make([]bool, len(s)+1)
	prev[0] = true
	for i := 1; i <= len(pattern); i++ {
		cur := make([]bool, len(s)+1)
		if pattern[i-1] == '*' {
			cur[0] = prev[0]
			for j := 1; j <= len(s); j++ {
				cur[j] = prev[j] || cur[j-1]
			}
		} else {
			for j := 1; j <= len(s); j++ {
				cur[j] = prev[j-1] && pattern[i-1] == s[j-1]
			}
		}
		prev = cur
	}
	return prev[len(s)]
}

// FuzzMatchPattern compares the allowlist and pricebook glob with the
// textbook dynamic-programming matcher, and checks that MatchRule picks a
// rule that matches and that no rule it passed over is more specific.
func FuzzMatchPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"mcp:search/*", "mcp:search/web"}, {"*", ""}, {"a*b*c", "abcbc"}, {"a*", "b"}, {"**a", "a"},
		{"llm:openai/gpt-4o*", "llm:openai/gpt-4o-mini"}, {"?[\\", "?[\\"}, {"*x*x*x*y", "xxxxxxxxxxxxxxxxxxxx"},
	} {
		f.Add(s[0], s[1], "*")
	}
	f.Fuzz(func(t *testing.T, pattern, resource, other string) {
		got, want := MatchPattern(pattern, resource), refMatch(pattern, resource)
		if got != want {
			t.Fatalf("MatchPattern(%q, %q) = %v, want %v", pattern, resource, got, want)
		}
		if !MatchPattern(resource, resource) && !strings.Contains(resource, "*") {
			t.Fatalf("MatchPattern(%q, itself) = false", resource)
		}
		rules := []PriceRule{{Resource: pattern}, {Resource: other}, {Resource: "*"}}
		r, ok := MatchRule(rules, resource)
		if !ok || !MatchPattern(r.Resource, resource) {
			t.Fatalf("MatchRule(%q) = %q, %v; \"*\" matches everything", resource, r.Resource, ok)
		}
		for _, o := range rules {
			if o.Resource != r.Resource && MatchPattern(o.Resource, resource) && moreSpecific(o.Resource, r.Resource, resource) {
				t.Fatalf("MatchRule(%q) = %q, but %q is more specific", resource, r.Resource, o.Resource)
			}
		}
	})
}
