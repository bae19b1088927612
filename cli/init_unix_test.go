//go:build unix

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestInitPrivateFiles: under a umask of 0, init creates the home 0700 and
// the database 0600 without a warning; on a home others can read it warns.
func TestInitPrivateFiles(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })

	e := newCLIEnv(t, "sqlite")
	_, errOut, code := e.run("init")
	if code != 0 || strings.Contains(errOut, "warning") {
		t.Fatalf("init on a fresh home: exit %d, stderr %q", code, errOut)
	}
	for path, want := range map[string]os.FileMode{e.home: 0o700, filepath.Join(e.home, "caracal.db"): 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %o", path, st.Mode(), err, want)
		}
	}

	open := newCLIEnv(t, "sqlite")
	if err := os.Mkdir(open.home, 0o755); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = open.run("init")
	want := "warning: home " + open.home + " has mode 0755: other users can read it"
	if code != 0 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "chmod 700 "+open.home) {
		t.Fatalf("init on a home readable by others: exit %d, stderr %q; want %q", code, errOut, want)
	}
	if st, err := os.Stat(filepath.Join(open.home, "caracal.db")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("database in an open home: %v, %v; want mode 600", st.Mode(), err)
	}
}
