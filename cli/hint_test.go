package cli

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/caracal-dev/caracal/internal/errkind"
	"github.com/caracal-dev/caracal/ledger"
)

// TestExitCodeHints checks that the CLI, not the libraries, tells the user
// which command fixes an error: the library messages name none.
func TestExitCodeHints(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("schema version 1, this binary needs 2: %w", ledger.ErrSchemaOutdated),
			"caracal: schema version 1, this binary needs 2: database schema is older than this binary: run `caracal db migrate up`\n"},
		{ledger.ErrNoSigningKey, "caracal: no checkpoint signing key: run `caracal keys generate`\n"},
		{errkind.Errorf(ledger.ErrSigningKeyFileMissing, "no checkpoint signing key in /k: the database's active key is x; copy its key file there"),
			"caracal: no checkpoint signing key in /k: the database's active key is x; copy its key file there or run `caracal keys rotate`\n"},
		{errkind.Errorf(ledger.ErrSigningKeyActive, "signing key k is already active"),
			"caracal: signing key k is already active: use `caracal keys rotate` to replace it\n"},
		{errkind.Errorf(ledger.ErrTreeDamaged, "the tree has 3 leaves but 2 stored hashes (want 4)"),
			"caracal: the tree has 3 leaves but 2 stored hashes (want 4): run `caracal merkle verify --full`\n"},
		{errors.New("plain"), "caracal: plain\n"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		if code := ExitCode(&b, tc.err); code != 1 || b.String() != tc.want {
			t.Errorf("ExitCode(%v) = %d, %q; want 1, %q", tc.err, code, b.String(), tc.want)
		}
	}
	for _, s := range []error{ledger.ErrSchemaOutdated, ledger.ErrNoSigningKey, ledger.ErrSigningKeyFileMissing, ledger.ErrSigningKeyActive, ledger.ErrTreeDamaged} {
		if bytes.Contains([]byte(s.Error()), []byte("caracal ")) {
			t.Errorf("library error %q names a command", s)
		}
	}
}
