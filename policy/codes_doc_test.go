package policy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// codeConstants reads the values of the Code constants declared in
// types.go, so a code added there must be documented.
func codeConstants(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "types.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
			return true
		}
		for _, v := range vs.Values {
			if lit, ok := v.(*ast.BasicLit); ok {
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				codes = append(codes, s)
			}
		}
		return true
	})
	if len(codes) < 5 {
		t.Fatalf("found only %d Code constants in types.go: %v", len(codes), codes)
	}
	return codes
}

var backticked = regexp.MustCompile("`([a-z_]+)`")

// TestDecisionCodesDocumented checks that docs/cli.md's table of decision
// codes and docs/operations.md's `code` attribute list exactly the codes
// policy declares.
func TestDecisionCodesDocumented(t *testing.T) {
	codes := codeConstants(t)
	known := map[string]bool{}
	for _, c := range codes {
		known[c] = true
	}

	cli, err := os.ReadFile("../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	table := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| .*$").FindAllStringSubmatch(string(cli), -1) {
		table[m[1]] = true
	}
	for _, c := range codes {
		// The table lists refusals: "allowed" is no refusal and
		// usage_overrun marks a charged event, not a decision.
		if c == string(CodeAllowed) || c == string(CodeUsageOverrun) {
			continue
		}
		if !table[c] {
			t.Errorf("docs/cli.md's decision code table has no row for %q", c)
		}
	}

	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, l := range strings.Split(string(ops), "\n") {
		if strings.HasPrefix(l, "| `code` |") {
			row = l
			break
		}
	}
	if row == "" {
		t.Fatal("docs/operations.md has no `code` attribute row")
	}
	inRow := map[string]bool{}
	for _, m := range backticked.FindAllStringSubmatch(strings.TrimPrefix(row, "| `code` |"), -1) {
		inRow[m[1]] = true
	}
	outcomes := map[string]bool{"allowed": true, "denied": true, "settled": true, "released": true, "charged": true, "refunded": true, "unconfirmed": true, "error": true}
	for w := range inRow {
		if !known[w] && !outcomes[w] {
			t.Errorf("docs/operations.md lists code %q, which policy does not declare", w)
		}
	}
	for _, c := range codes {
		if !inRow[c] {
			t.Errorf("docs/operations.md's `code` row does not list %q", c)
		}
	}
}
