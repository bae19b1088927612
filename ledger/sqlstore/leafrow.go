package sqlstore

import (
	"encoding/json"
	"fmt"

	"github.com/caracal-dev/caracal/merkle"
)

// leafColumns are the event columns a leaf is made of, in merkle.Leaf
// order, over the events table aliased e.
const leafColumns = `e.id, e.time_ns, e.agent_id, e.agent_name, e.chain, e.resource, e.operation, e.quantity, e.unit,
	e.amount_nanos, e.currency, e.request_id, e.outcome, e.code, e.reason,
	e.input_tokens, e.output_tokens, e.cached_tokens, e.cache_write_tokens, e.reasoning_tokens, e.upstream, e.unpriced`

var leafColumnNames = [...]string{"id", "time_ns", "agent_id", "agent_name", "chain", "resource", "operation", "quantity", "unit",
	"amount_nanos", "currency", "request_id", "outcome", "code", "reason",
	"input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "upstream", "unpriced"}

const nLeafColumns = len(leafColumnNames)

// leafRow scans leafColumns as the driver returns them, so the leaf is
// built from the values exactly as stored: a column holding anything a
// Caracal writer never writes (a REAL amount, an unpriced of 2, a chain
// that is not canonical JSON) is reported instead of being coerced.
type leafRow struct {
	vals [nLeafColumns]any
	ptrs [nLeafColumns]any
}

func newLeafRow() *leafRow {
	r := &leafRow{}
	for i := range r.vals {
		r.ptrs[i] = &r.vals[i]
	}
	return r
}

// missing reports whether the joined event row is absent.
func (r *leafRow) missing() bool { return r.vals[0] == nil }

// leaf converts the scanned values into l.
func (r *leafRow) leaf(l *merkle.Leaf) error {
	var err error
	str := func(i int) string {
		if s, ok := r.vals[i].(string); ok {
			return s
		}
		if err == nil {
			err = fmt.Errorf("column %s holds %s, not text", leafColumnNames[i], describe(r.vals[i]))
		}
		return ""
	}
	num := func(i int) int64 {
		if n, ok := r.vals[i].(int64); ok {
			return n
		}
		if err == nil {
			err = fmt.Errorf("column %s holds %s, not an integer", leafColumnNames[i], describe(r.vals[i]))
		}
		return 0
	}
	l.ID = str(0)
	l.TimeNS = num(1)
	l.AgentID = str(2)
	l.AgentName = str(3)
	chain := str(4)
	l.Resource = str(5)
	l.Operation = str(6)
	l.Quantity = str(7)
	l.Unit = str(8)
	l.AmountNanos = num(9)
	l.Currency = str(10)
	l.RequestID = str(11)
	l.Outcome = str(12)
	l.Code = str(13)
	l.Reason = str(14)
	l.InputTokens = num(15)
	l.OutputTokens = num(16)
	l.CachedTokens = num(17)
	l.CacheWriteTokens = num(18)
	l.ReasoningTokens = num(19)
	l.Upstream = str(20)
	switch v := r.vals[21].(type) {
	case bool:
		l.Unpriced = v
	case int64:
		if v != 0 && v != 1 && err == nil {
			err = fmt.Errorf("column unpriced holds %d, not 0 or 1", v)
		}
		l.Unpriced = v == 1
	default:
		if err == nil {
			err = fmt.Errorf("column unpriced holds %s, not a boolean", describe(v))
		}
	}
	if err != nil {
		return err
	}
	l.Chain, err = parseChain(chain, l.Chain[:0])
	return err
}

// parseChain reads the chain column (encodeChain's JSON array) and insists
// it is byte for byte what encodeChain writes, so no edit goes unseen.
func parseChain(s string, dst []string) ([]string, error) {
	if ids, ok := parsePlainChain(s, dst); ok {
		return ids, nil
	}
	var ids []string
	if err := json.Unmarshal([]byte(s), &ids); err != nil {
		return nil, fmt.Errorf("column chain holds %q, not a JSON array of agent IDs", s)
	}
	if encodeChain(ids) != s {
		return nil, fmt.Errorf("column chain holds %q, not in the form Caracal writes (%s)", s, encodeChain(ids))
	}
	return append(dst, ids...), nil
}

// parsePlainChain parses the common chain of IDs with only printable ASCII
// that JSON does not escape, without encoding/json: verification reads a
// million of them. It reports false for anything else, which parseChain
// then reads the slow, general way.
func parsePlainChain(s string, dst []string) ([]string, bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, false
	}
	body := s[1 : len(s)-1]
	if body == "" {
		return dst, true
	}
	for {
		if len(body) < 2 || body[0] != '"' {
			return nil, false
		}
		end := 1
		for end < len(body) && body[end] != '"' {
			c := body[end]
			// encoding/json escapes these, so the canonical form never has them raw.
			if c < 0x20 || c > 0x7e || c == '\\' || c == '<' || c == '>' || c == '&' {
				return nil, false
			}
			end++
		}
		if end == len(body) {
			return nil, false
		}
		dst = append(dst, body[1:end])
		body = body[end+1:]
		if body == "" {
			return dst, true
		}
		if body[0] != ',' {
			return nil, false
		}
		body = body[1:]
	}
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return fmt.Sprintf("a %d-byte blob", len(v))
	case string:
		return fmt.Sprintf("text %q", v)
	default:
		return fmt.Sprintf("%v (%T)", v, v)
	}
}
