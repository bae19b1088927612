package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/caracal-dev/caracal/internal/money"
	"go.yaml.in/yaml/v3"
)

// Pricebook file formats.
const (
	FormatYAML = "yaml"
	FormatJSON = "json"
)

// ParsePricebook reads a pricebook file: a list of price rules,
//
//	prices:
//	  - resource: "mcp:fs/read_file"
//	    per_call: "0.001"
//	  - resource: "mcp:search/*"
//	    per_call: "0.01"
//	    per_unit: {path: "count", price: "0.002"}
//	  - resource: "llm:openai/gpt-4o*"
//	    currency: "USD"
//	    input_per_million: "2.50"
//	    output_per_million: "10.00"
//	    cached_input_per_million: "1.25"
//	    cache_write_per_million: "3.125"
//	    reasoning_per_million: "10.00"
//	    charge_errors: false
//	  - resource: "mcp:travel/book"
//	    per_call: "0.50"
//	    charge_rounds: true
//
// in YAML or the same shape in JSON. Amounts are decimal strings; a bare
// number is accepted too, and is read from its text exactly as written,
// never through a binary float, so `per_call: 0.10` is exactly 0.10. An
// amount with more than 9 decimal places or in exponent notation is an
// error. The currency defaults to USD.
//
// The format is "yaml", "json", or "" to tell from the content (JSON when
// it starts with `{`).
//
// Parsing is strict and all or nothing: an unknown field (such as a rule
// kind `per_token`), a value of the wrong type, an invalid rule
// (ValidatePriceRule) or a resource listed twice fails the whole file, with
// an error naming the entry (counted from 1), its resource and the field:
// `pricebook entry 2 ("mcp:search/*"): unknown field "per_token"`. A file
// that is not valid YAML or JSON fails with `malformed pricebook: line N: …`.
func ParsePricebook(data []byte, format string) ([]PriceRule, error) {
	// Editors on some systems start UTF-8 files with a byte-order mark.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	format, err := pricebookFormat(data, format)
	if err != nil {
		return nil, err
	}
	if format == FormatJSON {
		// The YAML parser below accepts JSON, and more; this keeps a file
		// that claims to be JSON to JSON.
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, jsonSyntaxError(data, err)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New(`malformed pricebook: empty file (want a mapping with a "prices" list)`)
		}
		return nil, fmt.Errorf("malformed pricebook: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("malformed pricebook: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return nil, fmt.Errorf("malformed pricebook: line %d: more than one YAML document", extra.Line)
	}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf(`malformed pricebook: line %d: want a mapping with a "prices" list`, root.Line)
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], deref(root.Content[i+1])
		if k.Value != "prices" {
			return nil, fmt.Errorf(`malformed pricebook: line %d: unknown field %q (want "prices")`, k.Line, k.Value)
		}
		if list != nil {
			return nil, fmt.Errorf(`malformed pricebook: line %d: "prices" given twice`, k.Line)
		}
		list = v
	}
	if list == nil {
		return nil, errors.New(`malformed pricebook: missing "prices" list`)
	}
	if isNull(list) {
		return []PriceRule{}, nil
	}
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf(`malformed pricebook: line %d: "prices" must be a list`, list.Line)
	}
	rules := make([]PriceRule, 0, len(list.Content))
	first := make(map[string]int, len(list.Content))
	for i, n := range list.Content {
		r, err := parsePriceEntry(deref(n))
		if err != nil {
			return nil, entryError(i+1, r.Resource, err)
		}
		r = NormalizePriceRule(r)
		if err := validatePriceRule(r); err != nil {
			return nil, entryError(i+1, r.Resource, err)
		}
		if j, dup := first[r.Resource]; dup {
			return nil, entryError(i+1, r.Resource, fmt.Errorf("duplicate resource, already priced by entry %d", j))
		}
		first[r.Resource] = i + 1
		rules = append(rules, r)
	}
	return rules, nil
}

func entryError(n int, resource string, err error) error {
	if resource == "" {
		return fmt.Errorf("pricebook entry %d: %w", n, err)
	}
	return fmt.Errorf("pricebook entry %d (%q): %w", n, resource, err)
}

// parsePriceEntry reads one entry. On error the returned rule still carries
// the resource when it could be read, so that the error can name it.
func parsePriceEntry(n *yaml.Node) (PriceRule, error) {
	var r PriceRule
	if n.Kind != yaml.MappingNode {
		return r, fmt.Errorf("line %d: want a mapping with a resource and its prices", n.Line)
	}
	// The resource first, so that every later error names it.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "resource" {
			v := deref(n.Content[i+1])
			if v.Kind != yaml.ScalarNode || isNull(v) {
				return r, errors.New("resource: want a string such as \"mcp:fs/read_file\"")
			}
			r.Resource = v.Value
		}
	}
	if r.Resource == "" {
		return r, errors.New("resource: missing")
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, v := n.Content[i].Value, deref(n.Content[i+1])
		if seen[key] {
			return r, fmt.Errorf("field %q given twice", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "resource":
		case "currency":
			if v.Kind != yaml.ScalarNode || isNull(v) {
				err = errors.New("want a three-letter code such as USD")
			}
			r.Currency = v.Value
			if c, perr := money.ParseCurrency(v.Value); perr == nil {
				r.Currency = c // "usd" is USD; a bad code is reported by validation
			}
		case "per_call":
			r.PerCall, err = parseAmountNode(v)
		case "input_per_million":
			r.InputPerMillion, err = parseAmountNode(v)
		case "output_per_million":
			r.OutputPerMillion, err = parseAmountNode(v)
		case "cached_input_per_million":
			r.CachedInputPerMillion, err = parseAmountNode(v)
		case "cache_write_per_million":
			r.CacheWritePerMillion, err = parseAmountNode(v)
		case "reasoning_per_million":
			r.ReasoningPerMillion, err = parseAmountNode(v)
		case "per_unit":
			r.PerUnit, err = parsePerUnit(v)
		case "charge_errors":
			var b bool
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
				err = errors.New("want true or false")
			}
			r.ChargeErrors = &b
		case "charge_rounds":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&r.ChargeRounds) != nil {
				err = errors.New("want true or false")
			}
		default:
			return r, fmt.Errorf("unknown field %q", key)
		}
		if err != nil {
			return r, fmt.Errorf("%s: %w", key, err)
		}
	}
	return r, nil
}

func parsePerUnit(n *yaml.Node) (*PerUnit, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errors.New(`want a mapping such as {path: "count", price: "0.002"}`)
	}
	u := &PerUnit{}
	var havePrice, havePath bool
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, v := n.Content[i].Value, deref(n.Content[i+1])
		switch key {
		case "path":
			if havePath {
				return nil, errors.New(`field "path" given twice`)
			}
			if v.Kind != yaml.ScalarNode || isNull(v) {
				return nil, errors.New(`path: want a gjson path such as "count"`)
			}
			u.Path, havePath = v.Value, true
		case "price":
			if havePrice {
				return nil, errors.New(`field "price" given twice`)
			}
			a, err := parseAmountNode(v)
			if err != nil {
				return nil, fmt.Errorf("price: %w", err)
			}
			u.Price, havePrice = a, true
		default:
			return nil, fmt.Errorf(`unknown field %q`, key)
		}
	}
	if !havePath {
		return nil, errors.New(`path: missing (want a gjson path into the call arguments, e.g. count)`)
	}
	if !havePrice {
		return nil, errors.New("price: missing")
	}
	return u, nil
}

// parseAmountNode reads an amount from a scalar's text as written: a string,
// or a number whose text is a plain decimal.
func parseAmountNode(n *yaml.Node) (money.Amount, error) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return 0, errors.New(`want a decimal amount such as "0.01"`)
	}
	switch n.Tag {
	case "!!str", "!!int", "!!float":
	default:
		return 0, fmt.Errorf(`want a decimal amount such as "0.01", got %q`, n.Value)
	}
	return money.Parse(n.Value)
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func pricebookFormat(data []byte, format string) (string, error) {
	switch strings.ToLower(format) {
	case "yaml", "yml":
		return FormatYAML, nil
	case "json":
		return FormatJSON, nil
	case "":
		trimmed := bytes.TrimLeft(data, " \t\r\n")
		if len(trimmed) > 0 && trimmed[0] == '{' {
			return FormatJSON, nil
		}
		return FormatYAML, nil
	}
	return "", fmt.Errorf("invalid pricebook format %q: want yaml or json", format)
}

// jsonSyntaxError turns a JSON decoding error into a malformed-pricebook
// error with the line it happened on.
func jsonSyntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
		return fmt.Errorf("malformed pricebook: line %d: %s", line, se.Error())
	}
	return fmt.Errorf("malformed pricebook: %w", err)
}

// pricebookFile is the file shape MarshalPricebook writes.
type pricebookFile struct {
	Prices []priceEntry `json:"prices" yaml:"prices"`
}

type priceEntry struct {
	Resource              string        `json:"resource" yaml:"resource"`
	Currency              string        `json:"currency,omitempty" yaml:"currency,omitempty"`
	PerCall               string        `json:"per_call,omitempty" yaml:"per_call,omitempty"`
	InputPerMillion       string        `json:"input_per_million,omitempty" yaml:"input_per_million,omitempty"`
	OutputPerMillion      string        `json:"output_per_million,omitempty" yaml:"output_per_million,omitempty"`
	CachedInputPerMillion string        `json:"cached_input_per_million,omitempty" yaml:"cached_input_per_million,omitempty"`
	CacheWritePerMillion  string        `json:"cache_write_per_million,omitempty" yaml:"cache_write_per_million,omitempty"`
	ReasoningPerMillion   string        `json:"reasoning_per_million,omitempty" yaml:"reasoning_per_million,omitempty"`
	PerUnit               *perUnitEntry `json:"per_unit,omitempty" yaml:"per_unit,omitempty"`
	ChargeErrors          *bool         `json:"charge_errors,omitempty" yaml:"charge_errors,omitempty"`
	ChargeRounds          bool          `json:"charge_rounds,omitempty" yaml:"charge_rounds,omitempty"`
}

type perUnitEntry struct {
	Path  string `json:"path" yaml:"path"`
	Price string `json:"price" yaml:"price"`
}

// MarshalPricebook writes rules in the pricebook file shape that
// ParsePricebook reads, in format "yaml" (also for "") or "json". Amounts
// are decimal strings; zero prices and the default currency (USD) are left
// out. Rules are validated first, so that an exported file always imports.
func MarshalPricebook(rules []PriceRule, format string) ([]byte, error) {
	switch strings.ToLower(format) {
	case "", "yaml", "yml":
		format = FormatYAML
	case "json":
		format = FormatJSON
	default:
		return nil, fmt.Errorf("invalid pricebook format %q: want yaml or json", format)
	}
	f := pricebookFile{Prices: make([]priceEntry, 0, len(rules))}
	first := make(map[string]int, len(rules))
	for i, r := range rules {
		r = NormalizePriceRule(r)
		if err := validatePriceRule(r); err != nil {
			return nil, entryError(i+1, r.Resource, err)
		}
		if j, dup := first[r.Resource]; dup {
			return nil, entryError(i+1, r.Resource, fmt.Errorf("duplicate resource, already priced by entry %d", j))
		}
		first[r.Resource] = i + 1
		e := priceEntry{
			Resource:              r.Resource,
			PerCall:               amountText(r.PerCall),
			InputPerMillion:       amountText(r.InputPerMillion),
			OutputPerMillion:      amountText(r.OutputPerMillion),
			CachedInputPerMillion: amountText(r.CachedInputPerMillion),
			CacheWritePerMillion:  amountText(r.CacheWritePerMillion),
			ReasoningPerMillion:   amountText(r.ReasoningPerMillion),
			ChargeErrors:          r.ChargeErrors,
			ChargeRounds:          r.ChargeRounds,
		}
		if r.Currency != money.DefaultCurrency {
			e.Currency = r.Currency
		}
		if r.PerUnit != nil {
			e.PerUnit = &perUnitEntry{Path: r.PerUnit.Path, Price: r.PerUnit.Price.String()}
		}
		f.Prices = append(f.Prices, e)
	}
	if format == FormatJSON {
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("pricebook: %w", err)
		}
		return append(b, '\n'), nil
	}
	var doc yaml.Node
	if err := doc.Encode(f); err != nil {
		return nil, fmt.Errorf("pricebook: %w", err)
	}
	quoteStrings(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("pricebook: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("pricebook: %w", err)
	}
	return buf.Bytes(), nil
}

func amountText(a money.Amount) string {
	if a == 0 {
		return ""
	}
	return a.String()
}

// quoteStrings double-quotes every string value, as the documented shape
// does, so that amounts read as the decimal strings they are.
func quoteStrings(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 1; i < len(n.Content); i += 2 {
			quoteStrings(n.Content[i])
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		quoteStrings(c)
	}
}
