package sqlstore

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/merkle"
)

func TestParsePlainChainAgreesWithJSON(t *testing.T) {
	for _, s := range []string{`[]`, `["a"]`, `["a","b"]`, `["agent-1","agent-0","x y"]`, `[""]`, `["a",""]`,
		`[ "a"]`, `["a" ,"b"]`, `["a\u0026b"]`, `["a\\"b"]`, `["<"]`, `["é"]`, `["a",]`, `[,"a"]`, `["a"`, `"a"]`, ``, `[`, `null`, `["a""b"]`} {
		got, ok := parsePlainChain(s, nil)
		var ids []string
		jerr := json.Unmarshal([]byte(s), &ids)
		canonical := jerr == nil && encodeChain(ids) == s
		if ok && !canonical {
			t.Errorf("parsePlainChain(%q) accepted a chain encodeChain never writes", s)
		}
		if ok && fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Errorf("parsePlainChain(%q) = %q, json says %q", s, got, ids)
		}
		// Every canonical chain parses, by the fast path or the slow one.
		if canonical {
			if back, err := parseChain(s, nil); err != nil || fmt.Sprint(back) != fmt.Sprint(ids) {
				t.Errorf("parseChain(%q) = %q, %v", s, back, err)
			}
		} else if _, err := parseChain(s, nil); err == nil {
			t.Errorf("parseChain(%q) accepted a non-canonical chain", s)
		}
	}
}

func TestParseCanonicalInt(t *testing.T) {
	for _, s := range []string{"0", "1", "-1", "42", "9223372036854775807", "-9223372036854775808", "1234567890123456789",
		"", "-", "-0", "01", "+1", "1.0", "1e3", " 1", "9223372036854775808", "12a"} {
		n, ok := parseCanonicalInt(s)
		want, err := strconv.ParseInt(s, 10, 64)
		wantOK := err == nil && strconv.FormatInt(want, 10) == s
		if ok != wantOK || (ok && n != want) {
			t.Errorf("parseCanonicalInt(%q) = %d, %v; want %d, %v", s, n, ok, want, wantOK)
		}
	}
}

func TestUnpackLeaf(t *testing.T) {
	fields := []string{"ev-1", "17", "a1", "bot", `["a1","a0"]`, "mcp:fs/read", "tools/call", "2", "page", "1500",
		"USD", "r1", "charged", "", "", "1", "2", "3", "4", "5", "fs", "1"}
	var l merkle.Leaf
	if !unpackLeaf(strings.Join(fields, "\x00"), &l) {
		t.Fatal("unpackLeaf refused a well-formed row")
	}
	want := merkle.Leaf{ID: "ev-1", TimeNS: 17, AgentID: "a1", AgentName: "bot", Chain: []string{"a1", "a0"}, Resource: "mcp:fs/read",
		Operation: "tools/call", Quantity: "2", Unit: "page", AmountNanos: 1500, Currency: "USD", RequestID: "r1", Outcome: "charged",
		InputTokens: 1, OutputTokens: 2, CachedTokens: 3, CacheWriteTokens: 4, ReasoningTokens: 5, Upstream: "fs", Unpriced: true}
	if fmt.Sprint(l) != fmt.Sprint(want) {
		t.Fatalf("unpackLeaf = %+v\nwant %+v", l, want)
	}
	bad := map[string]func([]string){
		"NUL inside a value": func(f []string) { f[14] = "a\x00b" },
		"too few fields":     func(f []string) { f[0] = "" },
		"real amount":        func(f []string) { f[9] = "1500.0" },
		"unpriced 2":         func(f []string) { f[21] = "2" },
		"spaced chain":       func(f []string) { f[4] = `["a1", "a0"]` },
	}
	for name, edit := range bad {
		f := append([]string(nil), fields...)
		edit(f)
		p := strings.Join(f, "\x00")
		if name == "too few fields" {
			p = strings.Join(f[1:], "\x00")
		}
		if unpackLeaf(p, &l) {
			t.Errorf("%s: unpackLeaf accepted it", name)
		}
	}
}
