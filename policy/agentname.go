package policy

import (
	"fmt"
	"regexp"

	"github.com/google/uuid"
)

// MaxAgentNameLen is the longest agent name ValidateAgentName accepts.
const MaxAgentNameLen = 64

var agentNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidateAgentName is the one rule for a new agent's name: 1 to 64 ASCII
// letters, digits, '.', '_' or '-', starting with a letter or digit, and
// not shaped like a UUID (agents are addressed by name or by their UUID,
// so a UUID-shaped name would be ambiguous). Names appear in resources,
// log lines, ledger rows and shell commands, so they stay printable,
// unspaced and need no quoting.
//
// The rule applies when an agent is created. Agents stored under an older,
// looser rule (any printable UTF-8 up to 128 characters) stay readable and
// addressable by name or ID; nothing re-validates a stored name.
func ValidateAgentName(name string) error {
	if name == "" {
		return fmt.Errorf("agent name is required")
	}
	if !agentNameRE.MatchString(name) {
		return fmt.Errorf("invalid agent name %q: use up to %d letters, digits, '.', '_' and '-', starting with a letter or digit", name, MaxAgentNameLen)
	}
	if _, err := uuid.Parse(name); err == nil {
		return fmt.Errorf("agent name %q must not be a UUID: UUIDs are agent IDs", name)
	}
	return nil
}
