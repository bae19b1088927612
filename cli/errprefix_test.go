package cli

import (
	"strings"
	"testing"
)

// TestErrorsDoNotRepeatCaracal: errors are printed after "caracal: ", so a
// message naming its command must not start with the root's name again.
func TestErrorsDoNotRepeatCaracal(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.ok("init")
	for _, args := range [][]string{
		{"merkle", "verify", "extra"},
		{"agent", "list", "extra"},
		{"keys", "export-public", "a", "b"},
		{"agent", "show"},
		{"agent", "show", "a", "b"},
		{"ledger", "verify", "extra"},
	} {
		_, errOut, code := e.run(args...)
		if code != 2 {
			t.Errorf("caracal %s: exit %d, want 2; stderr %q", strings.Join(args, " "), code, errOut)
		}
		if !strings.HasPrefix(errOut, "caracal: ") || strings.HasPrefix(errOut, "caracal: caracal") {
			t.Errorf("caracal %s: stderr %q, want one \"caracal: \" prefix", strings.Join(args, " "), errOut)
		}
	}
}
