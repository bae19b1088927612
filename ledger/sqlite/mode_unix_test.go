//go:build unix

package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/caracal-dev/caracal/ledger"
)

// TestFilesArePrivate: the database and its WAL and SHM files are created
// 0600 even under a umask that would leave them readable by everyone.
func TestFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	path := filepath.Join(t.TempDir(), "caracal.db")
	s := openMigrated(t, path)
	if _, err := s.CreateAgent(context.Background(), ledger.NewAgent{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %o, want 600", filepath.Base(p), m)
		}
	}
}
