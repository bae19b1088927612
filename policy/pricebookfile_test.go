package policy

import (
	"reflect"
	"strings"
	"testing"
)

// designPricebook uses every form a price rule can take.
const designPricebook = `prices:
  - resource: "mcp:fs/read_file"
    per_call: "0.001"
  - resource: "mcp:search/*"
    per_call: "0.01"
    per_unit: {path: "count", price: "0.002"}   # gjson path into the call arguments
  - resource: "llm:openai/gpt-4o*"
    input_per_million: "2.50"
    output_per_million: "10.00"
    cached_input_per_million: "1.25"
    cache_write_per_million: "3.125"
`

func designRules() []PriceRule {
	return []PriceRule{
		{Resource: "mcp:fs/read_file", Currency: "USD", PerCall: amt("0.001")},
		{Resource: "mcp:search/*", Currency: "USD", PerCall: amt("0.01"), PerUnit: &PerUnit{Path: "count", Price: amt("0.002")}},
		{Resource: "llm:openai/gpt-4o*", Currency: "USD", InputPerMillion: amt("2.50"), OutputPerMillion: amt("10.00"),
			CachedInputPerMillion: amt("1.25"), CacheWritePerMillion: amt("3.125")},
	}
}

func boolPtr(b bool) *bool { return &b }

func TestParsePricebook(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		format string
		want   []PriceRule
	}{
		{"design example", designPricebook, "yaml", designRules()},
		{"design example sniffed", designPricebook, "", designRules()},
		{"design example as JSON", `{"prices": [
			{"resource": "mcp:fs/read_file", "per_call": "0.001"},
			{"resource": "mcp:search/*", "per_call": "0.01", "per_unit": {"path": "count", "price": "0.002"}},
			{"resource": "llm:openai/gpt-4o*", "input_per_million": "2.50", "output_per_million": "10.00",
			 "cached_input_per_million": "1.25", "cache_write_per_million": "3.125"}]}`, "json", designRules()},
		{"JSON sniffed after a BOM and blank lines", "\xef\xbb\xbf\n\n  {\"prices\": [{\"resource\": \"mcp:fs/read_file\", \"per_call\": \"0.001\"}]}",
			"", designRules()[:1]},
		{"bare numbers are read from their text", "prices:\n  - resource: a\n    per_call: 0.10\n    input_per_million: 3\n    output_per_million: 0.000000001\n", "yaml",
			[]PriceRule{{Resource: "a", Currency: "USD", PerCall: amt("0.10"), InputPerMillion: amt("3"), OutputPerMillion: amt("0.000000001")}}},
		{"bare JSON numbers are read from their text", `{"prices":[{"resource":"a","per_call":0.1,"per_unit":{"path":"n","price":7}}]}`, "json",
			[]PriceRule{{Resource: "a", Currency: "USD", PerCall: amt("0.1"), PerUnit: &PerUnit{Path: "n", Price: amt("7")}}}},
		{"a number past float64 precision stays exact", "prices:\n  - resource: a\n    per_call: 9007199254.740993\n", "yaml",
			[]PriceRule{{Resource: "a", Currency: "USD", PerCall: amt("9007199254.740993")}}},
		{"currency, reasoning and charge_errors", "prices:\n  - resource: \"llm:x/*\"\n    currency: EUR\n    reasoning_per_million: \"12\"\n    charge_errors: false\n", "yml",
			[]PriceRule{{Resource: "llm:x/*", Currency: "EUR", ReasoningPerMillion: amt("12"), ChargeErrors: boolPtr(false)}}},
		{"charge_rounds", "prices:\n  - resource: \"mcp:travel/book\"\n    per_call: \"0.5\"\n    charge_rounds: true\n", "",
			[]PriceRule{{Resource: "mcp:travel/book", Currency: "USD", PerCall: amt("0.5"), ChargeRounds: true}}},
		{"a rule that prices nothing is a free resource", "prices:\n  - resource: \"mcp:fs/stat\"\n", "",
			[]PriceRule{{Resource: "mcp:fs/stat", Currency: "USD"}}},
		{"a lower-case currency is upper-cased", "prices:\n  - resource: a\n    currency: eur\n", "",
			[]PriceRule{{Resource: "a", Currency: "EUR"}}},
		{"empty list", "prices: []\n", "", []PriceRule{}},
		{"null list", "prices:\n", "", []PriceRule{}},
		{"aliases resolve", "prices:\n  - resource: a\n    per_call: &p \"0.5\"\n  - resource: b\n    per_call: *p\n", "",
			[]PriceRule{{Resource: "a", Currency: "USD", PerCall: amt("0.5")}, {Resource: "b", Currency: "USD", PerCall: amt("0.5")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePricebook([]byte(tt.data), tt.format)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParsePricebook =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParsePricebookErrors(t *testing.T) {
	entry := func(fields string) string { return "prices:\n  - resource: \"mcp:fs/*\"\n" + fields }
	tests := []struct {
		name   string
		data   string
		format string
		want   string
	}{
		{"unknown rule kind", "prices:\n  - resource: \"mcp:fs/read_file\"\n    per_call: \"0.001\"\n  - resource: \"mcp:search/*\"\n    per_token: \"0.01\"\n", "",
			`pricebook entry 2 ("mcp:search/*"): unknown field "per_token"`},
		{"unknown field before the resource", "prices:\n  - per_token: \"0.01\"\n    resource: \"mcp:search/*\"\n", "",
			`pricebook entry 1 ("mcp:search/*"): unknown field "per_token"`},
		{"negative price", entry("    per_call: \"-1\"\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_call: negative price -1.00`},
		{"negative token price", entry("    output_per_million: -10\n"), "", `pricebook entry 1 ("mcp:fs/*"): output_per_million: negative price -10.00`},
		{"bad amount", entry("    per_call: \"abc\"\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_call: invalid amount "abc": unexpected character 'a'`},
		{"exponent amount", entry("    per_call: 1e-3\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_call: invalid amount "1e-3": unexpected character 'e'`},
		{"too many decimals", entry("    input_per_million: 0.0000000001\n"), "", `pricebook entry 1 ("mcp:fs/*"): input_per_million: invalid amount "0.0000000001": more than 9 decimal places`},
		{"infinite amount", entry("    per_call: .inf\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_call: invalid amount ".inf": unexpected character 'i'`},
		{"boolean amount", entry("    per_call: true\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_call: want a decimal amount such as "0.01", got "true"`},
		{"null amount", entry("    per_call:\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_call: want a decimal amount such as "0.01"`},
		{"list amount", entry("    per_call: [1]\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_call: want a decimal amount such as "0.01"`},
		{"bad currency", entry("    currency: usdt\n"), "", `pricebook entry 1 ("mcp:fs/*"): currency: invalid currency "usdt": want a three-letter code such as USD`},
		{"null currency", entry("    currency:\n"), "", `pricebook entry 1 ("mcp:fs/*"): currency: want a three-letter code such as USD`},
		{"per_unit without path", entry("    per_unit: {price: \"0.002\"}\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_unit: path: missing (want a gjson path into the call arguments, e.g. count)`},
		{"per_unit empty path", entry("    per_unit: {path: \"\", price: \"0.002\"}\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_unit: path: empty (want a gjson path into the call arguments, e.g. count)`},
		{"per_unit without price", entry("    per_unit: {path: count}\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_unit: price: missing`},
		{"per_unit bad price", entry("    per_unit: {path: count, price: x}\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_unit: price: invalid amount "x": unexpected character 'x'`},
		{"per_unit unknown field", entry("    per_unit: {path: count, price: \"1\", unit: pages}\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_unit: unknown field "unit"`},
		{"per_unit not a mapping", entry("    per_unit: \"0.002\"\n"), "", `pricebook entry 1 ("mcp:fs/*"): per_unit: want a mapping such as {path: "count", price: "0.002"}`},
		{"charge_errors not a boolean", entry("    charge_errors: \"no\"\n"), "", `pricebook entry 1 ("mcp:fs/*"): charge_errors: want true or false`},
		{"charge_rounds not a boolean", entry("    charge_rounds: 1\n"), "", `pricebook entry 1 ("mcp:fs/*"): charge_rounds: want true or false`},
		{"field twice", entry("    per_call: \"1\"\n    per_call: \"2\"\n"), "", `pricebook entry 1 ("mcp:fs/*"): field "per_call" given twice`},
		{"missing resource", "prices:\n  - per_call: \"1\"\n", "", `pricebook entry 1: resource: missing`},
		{"empty resource", "prices:\n  - resource: \"\"\n", "", `pricebook entry 1: resource: missing`},
		{"resource not a string", "prices:\n  - resource: [a]\n", "", `pricebook entry 1: resource: want a string such as "mcp:fs/read_file"`},
		{"resource with a space", "prices:\n  - resource: \"mcp:fs/read file\"\n", "", `pricebook entry 1 ("mcp:fs/read file"): resource: "mcp:fs/read file" contains a space or control character`},
		{"entry not a mapping", "prices:\n  - \"mcp:fs/*\"\n", "", `pricebook entry 1: line 2: want a mapping with a resource and its prices`},
		{"duplicate resource", "prices:\n  - resource: a\n  - resource: b\n  - resource: a\n", "", `pricebook entry 3 ("a"): duplicate resource, already priced by entry 1`},
		{"later entry invalid: nothing returned", "prices:\n  - resource: a\n    per_call: \"1\"\n  - resource: b\n    per_call: \"-1\"\n", "", `pricebook entry 2 ("b"): per_call: negative price -1.00`},
		{"malformed YAML: unterminated string", "prices:\n  - resource: \"mcp:fs/*\"\n    per_call: \"0.01\n", "", `malformed pricebook: line 3: found unexpected end of stream`},
		{"malformed YAML: tab indentation", "prices:\n\t- resource: x\n", "", `malformed pricebook: line 2: found character that cannot start any token`},
		{"malformed YAML: unknown alias", "prices:\n  - resource: a\n    per_call: *nope\n", "", `malformed pricebook: unknown anchor 'nope' referenced`},
		{"two documents", "prices:\n  - resource: a\n---\nprices: []\n", "", `malformed pricebook: line 3: more than one YAML document`},
		{"empty file", "", "", `malformed pricebook: empty file (want a mapping with a "prices" list)`},
		{"comments only", "# nothing\n", "", `malformed pricebook: empty file (want a mapping with a "prices" list)`},
		{"unknown top-level field", "prices: []\nversion: 2\n", "", `malformed pricebook: line 2: unknown field "version" (want "prices")`},
		{"prices twice", "prices: []\nprices: []\n", "", `malformed pricebook: line 2: "prices" given twice`},
		{"no prices", "{}", "", `malformed pricebook: missing "prices" list`},
		{"prices not a list", "prices: 3\n", "", `malformed pricebook: line 1: "prices" must be a list`},
		{"top level not a mapping", "- resource: a\n", "", `malformed pricebook: line 1: want a mapping with a "prices" list`},
		{"malformed JSON", "{\n  \"prices\": [\n    {\"resource\": \"a\",}\n  ]\n}\n", "json", `malformed pricebook: line 3: invalid character '}' looking for beginning of object key string`},
		{"malformed JSON sniffed", "{\"prices\": [}", "", `malformed pricebook: line 1: invalid character '}' looking for beginning of value`},
		{"YAML given as JSON", "prices: []\n", "json", `malformed pricebook: line 1: invalid character 'p' looking for beginning of value`},
		{"JSON unknown field", `{"prices":[{"resource":"mcp:search/*","per_token":"1"}]}`, "json", `pricebook entry 1 ("mcp:search/*"): unknown field "per_token"`},
		{"unknown format", "prices: []\n", "toml", `invalid pricebook format "toml": want yaml or json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePricebook([]byte(tt.data), tt.format)
			if err == nil {
				t.Fatalf("ParsePricebook = %+v, want error %q", got, tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("error = %q\nwant    %q", err, tt.want)
			}
			if got != nil {
				t.Fatalf("rules returned with an error: %+v", got)
			}
		})
	}
}

func TestMarshalPricebook(t *testing.T) {
	yamlOut, err := MarshalPricebook(designRules(), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	const wantYAML = `prices:
  - resource: "mcp:fs/read_file"
    per_call: "0.001"
  - resource: "mcp:search/*"
    per_call: "0.01"
    per_unit:
      path: "count"
      price: "0.002"
  - resource: "llm:openai/gpt-4o*"
    input_per_million: "2.50"
    output_per_million: "10.00"
    cached_input_per_million: "1.25"
    cache_write_per_million: "3.125"
`
	if string(yamlOut) != wantYAML {
		t.Fatalf("YAML =\n%s\nwant\n%s", yamlOut, wantYAML)
	}
	jsonOut, err := MarshalPricebook(designRules()[:2], "json")
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{
  "prices": [
    {
      "resource": "mcp:fs/read_file",
      "per_call": "0.001"
    },
    {
      "resource": "mcp:search/*",
      "per_call": "0.01",
      "per_unit": {
        "path": "count",
        "price": "0.002"
      }
    }
  ]
}
`
	if string(jsonOut) != wantJSON {
		t.Fatalf("JSON =\n%s\nwant\n%s", jsonOut, wantJSON)
	}
	empty, err := MarshalPricebook(nil, "json")
	if err != nil || string(empty) != "{\n  \"prices\": []\n}\n" {
		t.Fatalf("empty JSON = %q, %v", empty, err)
	}

	for _, bad := range []struct {
		rules  []PriceRule
		format string
		want   string
	}{
		{designRules(), "xml", `invalid pricebook format "xml": want yaml or json`},
		{[]PriceRule{{Resource: "a", PerCall: amt("-1")}}, "yaml", `pricebook entry 1 ("a"): per_call: negative price -1.00`},
		{[]PriceRule{{Resource: "a"}, {Resource: "a"}}, "json", `pricebook entry 2 ("a"): duplicate resource, already priced by entry 1`},
	} {
		if _, err := MarshalPricebook(bad.rules, bad.format); err == nil || err.Error() != bad.want {
			t.Errorf("MarshalPricebook error = %v, want %q", err, bad.want)
		}
	}
}

func TestPricebookRoundTrip(t *testing.T) {
	rules := append(designRules(),
		PriceRule{Resource: "llm:anthropic/claude-*", Currency: "EUR", InputPerMillion: amt("3"), OutputPerMillion: amt("15"),
			CachedInputPerMillion: amt("0.30"), CacheWritePerMillion: amt("3.75"), ReasoningPerMillion: amt("15"), ChargeErrors: boolPtr(true)},
		PriceRule{Resource: "mcp:tools/free", Currency: "USD", ChargeErrors: boolPtr(false)},
		PriceRule{Resource: "mcp:travel/book", Currency: "USD", PerCall: amt("0.5"), ChargeRounds: true},
		PriceRule{Resource: "http:upstream/*", Currency: "JPY", PerCall: amt("9223372036.854775807"), PerUnit: &PerUnit{Path: "items.#", Price: 0}},
		PriceRule{Resource: "*", Currency: "USD", PerCall: amt("0.000000001")},
	)
	for _, format := range []string{"yaml", "json"} {
		t.Run(format, func(t *testing.T) {
			out, err := MarshalPricebook(rules, format)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParsePricebook(out, "")
			if err != nil {
				t.Fatalf("%v in\n%s", err, out)
			}
			if !reflect.DeepEqual(back, rules) {
				t.Fatalf("round trip =\n%+v\nwant\n%+v\nvia\n%s", back, rules, out)
			}
			again, err := MarshalPricebook(back, format)
			if err != nil || string(again) != string(out) {
				t.Fatalf("second marshal differs: %v\n%s\n%s", err, again, out)
			}
			if strings.Contains(string(out), "USD") {
				t.Fatalf("default currency written out:\n%s", out)
			}
		})
	}
}

func TestMarshalPricebookFillsCurrency(t *testing.T) {
	out, err := MarshalPricebook([]PriceRule{{Resource: "a", PerCall: amt("1")}}, "")
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePricebook(out, "yaml")
	if err != nil || len(back) != 1 || back[0].Currency != "USD" || back[0].PerCall != amt("1") {
		t.Fatalf("ParsePricebook(%s) = %+v, %v", out, back, err)
	}
}
