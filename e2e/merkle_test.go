package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// openLedger opens the user's database in this process, to commit events
// the way the enforcement code does and to watch integration progress.
func (u *cliUser) openLedger() ledger.Store {
	u.t.Helper()
	ctx := context.Background()
	var (
		s   ledger.Store
		err error
	)
	if u.dbURL != "" {
		s, err = postgres.Open(ctx, u.dbURL, postgres.Options{})
	} else {
		s, err = sqlite.Open(ctx, filepath.Join(u.home, "caracal.db"), sqlite.Options{})
	}
	if err != nil {
		u.t.Fatal(err)
	}
	u.t.Cleanup(func() { s.Close() })
	return s
}

// TestMerkleKill9DuringIntegration kills `caracal merkle integrate` with
// SIGKILL in the middle of its work, several times, while more events are
// committed, then restarts it: every committed event ends up in the tree
// exactly once and `merkle verify --full` passes.
func TestMerkleKill9DuringIntegration(t *testing.T) {
	for _, backend := range cliBackends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			u := newCLIUser(t, backend)
			u.ok("init")
			s := u.openLedger()
			db := storetest.OpenMerkleDB(t, s)
			total := 5000
			db.InsertEvents(t, 0, total)

			kills := 0
			prev := int64(0)
			for round := 0; round < 20 && kills < 3; round++ {
				cmd := exec.Command(binary, "merkle", "integrate", "--batch", "300")
				cmd.Env = u.env
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				// Events keep arriving while the integrator runs.
				db.InsertEvents(t, total, 200)
				total += 200
				var killed bool
				deadline := time.Now().Add(2 * time.Minute)
			watch:
				for time.Now().Before(deadline) {
					select {
					case err := <-exited:
						if err != nil {
							t.Fatalf("integrate exited early: %v", err)
						}
						break watch
					case <-time.After(5 * time.Millisecond):
					}
					n, err := s.TreeSize(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if n > prev {
						// At least one batch is committed and the next one is
						// under way: kill now, mid-transaction.
						if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
							t.Fatal(err)
						}
						err := <-exited
						if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); err == nil || !ok || ws.Signal() != syscall.SIGKILL {
							// It finished on its own just before the signal.
							break watch
						}
						killed = true
						break watch
					}
				}
				n, err := s.TreeSize(ctx)
				if err != nil {
					t.Fatal(err)
				}
				pending, _, err := s.PendingEvents(ctx)
				if err != nil {
					t.Fatal(err)
				}
				// Whatever the kill interrupted, every committed event is
				// either in the tree or still queued — never lost, never twice.
				if n+pending != int64(total) {
					t.Fatalf("after kill %d: tree %d + pending %d != %d committed events", kills, n, pending, total)
				}
				if killed {
					kills++
					t.Logf("killed with %d of %d events integrated", n, total)
				}
				prev = n
				if n == int64(total) {
					break
				}
			}
			if kills == 0 {
				t.Fatal("integration always finished before it could be killed; the test did not exercise a crash")
			}

			u.ok("merkle", "integrate")
			out := u.ok("merkle", "verify", "--full")
			if want := "OK: " + thousands(int64(total)) + " events"; !strings.HasPrefix(out, want) {
				t.Fatalf("verify --full after kills: %q, want prefix %q", out, want)
			}
			var st struct {
				TreeSize int64 `json:"tree_size"`
				Pending  int64 `json:"pending_events"`
			}
			u.json(&st, "merkle", "status")
			if st.TreeSize != int64(total) || st.Pending != 0 {
				t.Fatalf("status = %+v, want %d events and nothing pending", st, total)
			}
			var missing int
			if err := db.DB.QueryRow(`SELECT COUNT(*) FROM events e LEFT JOIN leaves l ON l.event_id = e.id WHERE l.seq IS NULL`).Scan(&missing); err != nil || missing != 0 {
				t.Fatalf("%d committed events have no leaf (%v)", missing, err)
			}
			// The proof of the last event verifies offline with the public key.
			pub := strings.TrimSpace(u.ok("keys", "export-public"))
			proof := u.ok("merkle", "prove", "--seq", itoa(int64(total-1)))
			var p struct {
				TreeSize int64 `json:"tree_size"`
			}
			if err := json.Unmarshal([]byte(proof), &p); err != nil || p.TreeSize != int64(total) {
				t.Fatalf("prove: %v\n%s", err, proof)
			}
			cmd := exec.Command(binary, "merkle", "verify-proof", "-", "--key", pub)
			cmd.Env, cmd.Stdin = u.env, strings.NewReader(proof)
			if b, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(b), "OK: ") {
				t.Fatalf("verify-proof: %v\n%s", err, b)
			}
		})
	}
}

// thousands prints n with a comma between groups of three digits, as the
// CLI prints counts.
func thousands(n int64) string {
	s := itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
