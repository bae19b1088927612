package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/signingkey"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/merkle"
)

func newKeysCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the Ed25519 keys that sign ledger checkpoints",
		Long: `Checkpoints are signed with an Ed25519 key kept in $CARACAL_HOME/keys:
NAME.key holds the private key (mode 0600, never leaves this machine),
NAME.pub the public key in note verifier-key format, which is what auditors
need. Every checkpoint records the ID of the key that signed it, so after a
rotation older checkpoints still verify with the retired key's public half,
which stays in the database.`,
		Args: noArgs,
	}
	cmd.AddCommand(newKeysGenerateCmd(f), newKeysListCmd(f), newKeysRotateCmd(f), newKeysExportCmd(f))
	return cmd
}

type keysOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.Merkle, error)
	Home   func() (string, error)
	Name   string
	Origin string
	Key    string
	Output string
}

func newKeysOptions(f *Factory) *keysOptions {
	return &keysOptions{IO: f.IO, Home: f.Home, Store: func(ctx context.Context) (ledger.Merkle, error) { return merkleStore(ctx, f) }}
}

// keyInfo is one row of `caracal keys list -o json`.
type keyInfo struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	PublicKey string     `json:"public_key"`
	CreatedAt time.Time  `json:"created_at"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
	Active    bool       `json:"active"`
	// PrivateKey is the private key file's path when it is in this home.
	PrivateKey string `json:"private_key_file,omitempty"`
}

func newKeysGenerateCmd(f *Factory) *cobra.Command {
	opts := newKeysOptions(f)
	cmd := &cobra.Command{
		Use:   "generate [--name NAME] [--origin ORIGIN]",
		Short: "Create the first checkpoint signing key",
		Long: `Generate creates an Ed25519 key pair in $CARACAL_HOME/keys and registers
its public half in the database as the active signing key. caracal init
already does this; use generate for a database that has no key yet, and
caracal keys rotate to replace an existing key.

The origin names the log in every checkpoint (default caracal/<host>); it
is the key's name in the signed note and stays the same across rotations.`,
		Example: `  caracal keys generate
  caracal keys generate --name ledger-2026 --origin example.com/caracal/prod`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runKeysGenerate(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Name, "name", "", "file name of the key in $CARACAL_HOME/keys (default ledger-<key hash>)")
	cmd.Flags().StringVar(&opts.Origin, "origin", "", "log origin written into checkpoints (default caracal/<host>)")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runKeysGenerate(ctx context.Context, opts *keysOptions) error {
	if opts.Name != "" {
		if err := signingkey.ValidKeyName(opts.Name); err != nil {
			return Usagef("--name: %v", err)
		}
	}
	if opts.Origin != "" {
		if _, _, err := merkle.GenerateKey(opts.Origin); err != nil {
			return Usagef("--origin: %v", err)
		}
	}
	m, home, err := keysDeps(ctx, opts)
	if err != nil {
		return err
	}
	kf, err := ledger.GenerateSigningKey(ctx, m, home, opts.Name, opts.Origin)
	if err != nil {
		return err
	}
	return printNewKey(opts, kf, nil)
}

func printNewKey(opts *keysOptions, kf signingkey.KeyFile, retired []string) error {
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, struct {
			keyInfo
			Retired []string `json:"retired"`
		}{keyInfo{ID: kf.Signer.KeyID(), Name: kf.Name, PublicKey: kf.Signer.VerifierKey(), CreatedAt: time.Now().UTC(), Active: true, PrivateKey: kf.Path}, nonNil(retired)})
	}
	pairs := [][2]string{
		{"Key", kf.Signer.KeyID()},
		{"Private key", kf.Path + " (keep it secret; back it up)"},
		{"Public key", kf.Signer.VerifierKey()},
	}
	for _, id := range retired {
		pairs = append(pairs, [2]string{"Retired", id + " (its checkpoints still verify)"})
	}
	return printKV(opts.IO.Out, pairs...)
}

func keysDeps(ctx context.Context, opts *keysOptions) (ledger.Merkle, string, error) {
	home, err := opts.Home()
	if err != nil {
		return nil, "", err
	}
	m, err := opts.Store(ctx)
	if err != nil {
		return nil, "", err
	}
	return m, home, nil
}

func newKeysListCmd(f *Factory) *cobra.Command {
	opts := newKeysOptions(f)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List signing keys, active and retired",
		Example: `  caracal keys list
  caracal keys list -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runKeysList(cmd.Context(), opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func listKeys(ctx context.Context, opts *keysOptions) ([]keyInfo, error) {
	m, home, err := keysDeps(ctx, opts)
	if err != nil {
		return nil, err
	}
	keys, err := m.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]keyInfo, 0, len(keys))
	for _, k := range keys {
		ki := keyInfo{ID: k.ID, Name: k.Name, PublicKey: k.PublicKey, CreatedAt: k.CreatedAt, RetiredAt: k.RetiredAt, Active: k.RetiredAt == nil}
		if p := filepath.Join(signingkey.KeysDir(home), k.Name+".key"); k.Name != "" {
			if _, err := os.Stat(p); err == nil {
				ki.PrivateKey = p
			}
		}
		out = append(out, ki)
	}
	return out, nil
}

func runKeysList(ctx context.Context, opts *keysOptions) error {
	keys, err := listKeys(ctx, opts)
	if err != nil {
		return err
	}
	rows := make([][]string, 0, len(keys))
	for _, k := range keys {
		status := "active"
		if !k.Active {
			status = "retired " + formatTimePtr(k.RetiredAt)
		}
		local := "no"
		if k.PrivateKey != "" {
			local = "yes"
		}
		rows = append(rows, []string{k.ID, orDash(k.Name), formatTime(k.CreatedAt), status, local})
	}
	return printRows(opts.IO.Out, opts.Output, keys, []string{"id", "name", "created", "status", "private key here"}, rows)
}

func newKeysRotateCmd(f *Factory) *cobra.Command {
	opts := newKeysOptions(f)
	cmd := &cobra.Command{
		Use:   "rotate [--name NAME]",
		Short: "Replace the active signing key with a new one",
		Long: `Rotate creates a new key with the same log origin, makes it the active
signing key and retires the old one. Retired keys stay in the database (and
their files in $CARACAL_HOME/keys) so every checkpoint they signed still
verifies. A running caracal mcp / proxy that signs with this home's keys
picks the new key up at its next integration, without a restart. Copy the
new key file to the other signing hosts sharing a PostgreSQL ledger: until
it is there they cannot sign (replicas without a key are not affected).`,
		Example: `  caracal keys rotate
  caracal keys rotate --name ledger-2027`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runKeysRotate(cmd.Context(), opts) },
	}
	cmd.Flags().StringVar(&opts.Name, "name", "", "file name of the new key (default ledger-<key hash>)")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runKeysRotate(ctx context.Context, opts *keysOptions) error {
	if opts.Name != "" {
		if err := signingkey.ValidKeyName(opts.Name); err != nil {
			return Usagef("--name: %v", err)
		}
	}
	m, home, err := keysDeps(ctx, opts)
	if err != nil {
		return err
	}
	kf, retired, err := ledger.RotateSigningKey(ctx, m, home, opts.Name)
	if err != nil {
		return err
	}
	return printNewKey(opts, kf, retired)
}

func newKeysExportCmd(f *Factory) *cobra.Command {
	opts := newKeysOptions(f)
	cmd := &cobra.Command{
		Use:   "export-public [ID|NAME]",
		Short: "Print a public key in note verifier-key format",
		Long: `Export-public prints the public key of the active signing key (or of the
key with the given ID or name) on one line, in the note verifier-key format
(origin+hash+base64) that caracal merkle verify-proof --key and other C2SP
signed-note verifiers accept. Publish it with your checkpoints.`,
		Example: `  caracal keys export-public > caracal.pub
  caracal keys export-public ledger-1a2b3c4d
  caracal keys export-public -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return Usagef("%s: unexpected argument %q", commandPath(cmd), args[1])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Key = args[0]
			}
			return runKeysExport(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runKeysExport(ctx context.Context, opts *keysOptions) error {
	keys, err := listKeys(ctx, opts)
	if err != nil {
		return err
	}
	var found *keyInfo
	for i := len(keys) - 1; i >= 0; i-- {
		k := &keys[i]
		if (opts.Key == "" && k.Active) || (opts.Key != "" && (k.ID == opts.Key || k.Name == opts.Key)) {
			found = k
			break
		}
	}
	if found == nil {
		if opts.Key != "" {
			return fmt.Errorf("signing key %q %w", opts.Key, ledger.ErrNotFound)
		}
		return errors.New("no active signing key: run `caracal keys generate`")
	}
	if opts.Output == FormatJSON {
		pub := *found
		pub.PrivateKey = "" // where the private key lives is not part of an export
		return printJSON(opts.IO.Out, pub)
	}
	_, err = fmt.Fprintln(opts.IO.Out, found.PublicKey)
	return err
}
