package signingkey_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/signingkey"
)

func TestKeyFileLifecycle(t *testing.T) {
	home := t.TempDir()
	kf, err := signingkey.GenerateKeyFile(home, "", "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(kf.Name, "ledger-") || kf.Path != filepath.Join(signingkey.KeysDir(home), kf.Name+".key") {
		t.Errorf("generated %+v", kf)
	}
	got, err := signingkey.LoadKeyFile(kf.Path)
	if err != nil || got.Signer.KeyID() != kf.Signer.KeyID() || got.Name != kf.Name {
		t.Fatalf("LoadKeyFile = %+v, %v", got, err)
	}
	pub, err := signingkey.ReadPublicKey(kf.PubPath)
	if err != nil || pub != kf.Signer.VerifierKey() {
		t.Errorf("ReadPublicKey(file) = %q, %v; want %q", pub, err, kf.Signer.VerifierKey())
	}
	if _, err := signingkey.GenerateKeyFile(home, kf.Name, "example.com/log"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second key with the same name: %v", err)
	}
	if err := os.Chmod(kf.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := signingkey.LoadKeyFile(kf.Path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadKeyFile of a world-readable key: %v", err)
	}
	if err := signingkey.ValidKeyName("../escape"); err == nil {
		t.Error("ValidKeyName accepts a path")
	}
}
