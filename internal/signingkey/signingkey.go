// Package signingkey keeps checkpoint signing keys as files in a Caracal
// home: generating, writing, loading them, and reading public keys given
// inline or by path. Package merkle, which signs and verifies, stays pure
// (no file system), like golang.org/x/mod/sumdb/tlog; ledger registers,
// rotates and retires the keys in the store.
package signingkey

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/caracal-dev/caracal/merkle"
)

// KeyFile is a checkpoint signing key on disk: the private signer key in
// Dir/<Name>.key (mode 0600) and the public verifier key in Dir/<Name>.pub.
type KeyFile struct {
	Name    string
	Path    string // the private key file
	PubPath string // the public key file
	Signer  *merkle.Signer
}

// KeysDir is where a Caracal home keeps its signing keys.
func KeysDir(home string) string { return filepath.Join(home, "keys") }

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidKeyName reports whether name can name a key file.
func ValidKeyName(name string) error {
	if !keyNameRE.MatchString(name) {
		return fmt.Errorf("key name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// GenerateKeyFile creates a new Ed25519 key for the log origin and writes
// it to KeysDir(home)/<name>.key (0600) and <name>.pub. An empty name
// becomes "ledger-" and the key's 8-hex-digit hash, unique per key. It
// never overwrites an existing key file.
func GenerateKeyFile(home, name, origin string) (KeyFile, error) {
	skey, _, err := merkle.GenerateKey(origin)
	if err != nil {
		return KeyFile{}, err
	}
	return WriteKeyFile(home, name, skey)
}

// WriteKeyFile writes the signer key skey to KeysDir(home)/<name>.key
// (0600) and its public key to <name>.pub; see GenerateKeyFile.
func WriteKeyFile(home, name, skey string) (KeyFile, error) {
	s, err := merkle.NewSigner(skey)
	if err != nil {
		return KeyFile{}, err
	}
	if name == "" {
		name = "ledger-" + s.KeyID()[strings.LastIndexByte(s.KeyID(), '+')+1:]
	}
	if err := ValidKeyName(name); err != nil {
		return KeyFile{}, err
	}
	dir := KeysDir(home)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return KeyFile{}, fmt.Errorf("create keys folder: %w", err)
	}
	kf := KeyFile{Name: name, Path: filepath.Join(dir, name+".key"), PubPath: filepath.Join(dir, name+".pub"), Signer: s}
	// O_EXCL: a second key with the same name must not destroy the key
	// older checkpoints were signed with.
	f, err := os.OpenFile(kf.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return KeyFile{}, fmt.Errorf("key %q already exists at %s", name, kf.Path)
		}
		return KeyFile{}, fmt.Errorf("write private key: %w", err)
	}
	_, err = f.WriteString(strings.TrimSpace(skey) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(kf.Path)
		return KeyFile{}, fmt.Errorf("write private key: %w", err)
	}
	if err := os.WriteFile(kf.PubPath, []byte(s.VerifierKey()+"\n"), 0o644); err != nil {
		return KeyFile{}, fmt.Errorf("write public key: %w", err)
	}
	return kf, nil
}

// LoadKeyFile reads a private key file. It refuses a file that group or
// others may read, as ssh does, because the key is what makes checkpoints
// trustworthy.
func LoadKeyFile(path string) (KeyFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return KeyFile{}, fmt.Errorf("read signing key: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return KeyFile{}, fmt.Errorf("signing key %s has mode %04o: it must be readable by its owner only (chmod 600)", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return KeyFile{}, fmt.Errorf("read signing key: %w", err)
	}
	s, err := merkle.NewSigner(string(b))
	if err != nil {
		return KeyFile{}, fmt.Errorf("%s: %w", path, err)
	}
	name := strings.TrimSuffix(filepath.Base(path), ".key")
	return KeyFile{Name: name, Path: path, PubPath: strings.TrimSuffix(path, ".key") + ".pub", Signer: s}, nil
}

// LoadKeyFiles reads every private key in KeysDir(home), in name order.
// A missing folder is not an error.
func LoadKeyFiles(home string) ([]KeyFile, error) {
	paths, err := filepath.Glob(filepath.Join(KeysDir(home), "*.key"))
	if err != nil {
		return nil, err
	}
	var out []KeyFile
	for _, p := range paths {
		kf, err := LoadKeyFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, kf)
	}
	return out, nil
}

// ReadPublicKey returns a verifier key given either the key itself or the
// path of a file holding it (such as the output of `caracal keys export-public`).
func ReadPublicKey(keyOrPath string) (string, error) {
	s := strings.TrimSpace(keyOrPath)
	if _, err := merkle.NewKeyRing(s); err == nil {
		return s, nil
	}
	b, err := os.ReadFile(keyOrPath)
	if err != nil {
		return "", fmt.Errorf("%q is neither a public key (name+hash+base64) nor a readable file: %w", keyOrPath, err)
	}
	s = strings.TrimSpace(string(b))
	if _, err := merkle.NewKeyRing(s); err != nil {
		return "", fmt.Errorf("%s: %w", keyOrPath, err)
	}
	return s, nil
}
