package cli

import (
	"errors"

	"github.com/caracal-dev/caracal/ledger"
)

// hints name the command that fixes an error the libraries report by kind.
// The libraries name no commands (an HTTP API has none to offer); the CLI
// adds them here, where it prints an error. Specific kinds come before the
// kinds they wrap.
var hints = []struct {
	kind error
	hint string
}{
	{ledger.ErrSchemaOutdated, ": run `caracal db migrate up`"},
	{ledger.ErrTreeDamaged, ": run `caracal merkle verify --full`"},
	{ledger.ErrSigningKeyFileMissing, " or run `caracal keys rotate`"},
	{ledger.ErrSigningKeyActive, ": use `caracal keys rotate` to replace it"},
	{ledger.ErrNoSigningKey, ": run `caracal keys generate`"},
}

// hint returns the suffix that tells the user how to fix err, or "".
func hint(err error) string {
	for _, h := range hints {
		if errors.Is(err, h.kind) {
			return h.hint
		}
	}
	return ""
}
