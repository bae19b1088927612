package cli

import (
	"strings"
	"testing"
)

// TestMCPNameFlagRule: --name follows the rule mcp.New applies to
// upstream names; it once let a trailing "_" through.
func TestMCPNameFlagRule(t *testing.T) {
	for _, tt := range []struct{ name, err string }{
		{"fs", ""},
		{"fs_", `--name: invalid name "fs_": must not contain "__" or end in "_"`},
		{"a__b", `--name: invalid name "a__b": must not contain "__" or end in "_"`},
		{"File", `--name: invalid name "File": use lower-case letters, digits, _ and -`},
	} {
		_, err := mcpUpstreams(&Config{}, mcpFlags{name: tt.name}, []string{"server"})
		if (tt.err == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), tt.err)) {
			t.Errorf("--name %q: %v, want %q", tt.name, err, tt.err)
		}
	}
}
