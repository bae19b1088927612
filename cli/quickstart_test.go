package cli

import (
	"context"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// runAsCaracal makes this test binary act as the caracal binary when a test
// starts it: quickstart runs os.Executable() as `caracal mcp` and as the
// example server.
const runAsCaracal = "CARACAL_TEST_RUN_AS_CARACAL"

func init() {
	// go test -fuzz starts this binary again as its fuzzing worker, with the
	// variable inherited: that child must stay a test binary.
	if os.Getenv(runAsCaracal) == "1" && !slices.Contains(os.Args[1:], "-test.fuzzworker") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Main(ctx, os.Args[1:])
		stop()
		os.Exit(code)
	}
	// Set once, before any test runs, and inherited by every child.
	_ = os.Setenv(runAsCaracal, "1")
	if os.Getenv("GORACE") == "" {
		// The race runtime otherwise sleeps a second at every child's exit.
		_ = os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
}

func TestDemoCallScript(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{
		{0, "ping -"},
		{1, "forecast city=Lisbon"},
		{2, "history city=Lisbon days=14"},
		{3, "forecast city=Nairobi"},
		{2 * len(demoCities), "history city=" + demoCities[len(demoCities)-1] + " days=14"},
		{2*len(demoCities) + 1, "forecast city=Lisbon"},
	}
	for _, tt := range tests {
		tool, args := demoCall(tt.n)
		if got := tool + " " + argsLabel(args); got != tt.want {
			t.Errorf("demoCall(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestShorten(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"pong", 10, "pong"},
		{"exactly10!", 10, "exactly10!"},
		{"Oslo: 15°C, 16°C", 8, "Oslo: 1…"},
	}
	for _, tt := range tests {
		if got := shorten(tt.in, tt.n); got != tt.want {
			t.Errorf("shorten(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// TestQuickstartTamperedLedger: quickstart ends with a full verification of
// the whole ledger, so an event edited behind Caracal's back since the last
// run fails it with exit 1, naming the event.
func TestQuickstartTamperedLedger(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.ok("quickstart")
	db := e.ledgerDB()
	var id string
	if err := db.DB.QueryRow(`SELECT event_id FROM leaves WHERE seq = 3`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	db.DisableAppendOnly(t)
	db.Exec(t, `UPDATE events SET amount_nanos = amount_nanos + 1 WHERE id = ?`, id)
	out, errOut, code := e.run("quickstart")
	want := "caracal: merkle verify --full failed: event seq 3 (id " + id + "): leaf hash mismatch: the row was changed\n"
	if code != 1 || errOut != want {
		t.Errorf("quickstart after tampering: exit %d, stderr %q; want exit 1, %q", code, errOut, want)
	}
	// The demo itself still ran: only the verdict is refused.
	if !strings.Contains(out, "refused: budget_exceeded") {
		t.Errorf("quickstart after tampering did not run the demo:\n%s", out)
	}
}
