package policy

import (
	"fmt"
	"strings"
)

// ValidateUpstreamName is the one rule for the name of an MCP upstream or
// an LLM provider, the <server> of a resource "mcp:<server>/<tool>" or
// "llm:<server>/<model>": lower-case ASCII letters, digits, '_' and '-';
// no "__" and no trailing '_', because the MCP gateway joins an upstream's
// name to its tool names with "__" ("a_" + "__" + "echo" would read back
// as server "a", tool "_echo"). The rule is the same for one upstream as
// for several, so a name stays valid when a second upstream is added.
func ValidateUpstreamName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name: use lower-case letters, digits, _ and -")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("invalid name %q: use lower-case letters, digits, _ and -", name)
		}
	}
	if strings.Contains(name, "__") || strings.HasSuffix(name, "_") {
		return fmt.Errorf("invalid name %q: must not contain \"__\" or end in \"_\", because \"__\" joins it to tool names", name)
	}
	return nil
}
