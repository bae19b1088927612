package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/merkle"
	"github.com/caracal-dev/caracal/policy"
)

func TestParseTimeFlag(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	// 00:30 in Paris is still the previous day in UTC: today is Paris's.
	now := time.Date(2026, 3, 10, 0, 30, 0, 0, paris)
	for _, tc := range []struct {
		in, want string
	}{
		{"today", "2026-03-10T00:00:00+01:00"},
		{"yesterday", "2026-03-09T00:00:00+01:00"},
		{"Today", "2026-03-10T00:00:00+01:00"},
		{"1w", "2026-03-03T00:30:00+01:00"},
		{"2w", "2026-02-24T00:30:00+01:00"},
		{"7d", "2026-03-03T00:30:00+01:00"},
		{"90m", "2026-03-09T23:00:00+01:00"},
		{"2026-01-02", "2026-01-02T00:00:00Z"},
		{"2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z"},
	} {
		got, err := parseTimeFlag("--since", tc.in, now)
		want, _ := time.Parse(time.RFC3339, tc.want)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTimeFlag(%q) = %v, %v; want %v", tc.in, got, err, want)
		}
	}
	for _, bad := range []string{"tomorrow", "1x", "-1w", "w"} {
		if _, err := parseTimeFlag("--since", bad, now); err == nil {
			t.Errorf("parseTimeFlag(%q): no error", bad)
		}
	}
}

func TestFormatCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 12083: "12,083", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := formatCount(n); got != want {
			t.Errorf("formatCount(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0 events", 1: "1 event", 2: "2 events", 1500: "1,500 events"} {
		if got := plural(n, "event"); got != want {
			t.Errorf("plural(%d) = %q, want %q", n, got, want)
		}
	}
}

// ledgerFixture is an initialised home with one agent and a way to append
// charged events as another process would.
type ledgerFixture struct {
	e     *cliEnv
	st    ledger.Store
	agent policy.Agent
}

func newLedgerFixture(t *testing.T) *ledgerFixture {
	t.Helper()
	e := newCLIEnv(t, "sqlite")
	e.ok("init")
	e.ok("agent", "register", "--name", "bot", "--owner", "ops")
	st := testStore(t, e)
	a, err := st.GetAgent(context.Background(), "bot")
	if err != nil {
		t.Fatal(err)
	}
	return &ledgerFixture{e: e, st: st, agent: a}
}

// charge appends one charged event for resource.
func (lf *ledgerFixture) charge(t *testing.T, resource string) {
	t.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	if d, err := lf.st.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: lf.agent.ID, Resource: resource, Amount: money.MustParse("0.01"), AllowUnbudgeted: true}); err != nil || !d.Allow {
		t.Fatalf("reserve: %+v %v", d, err)
	}
	if _, err := lf.st.Settle(ctx, ledger.SettleRequest{RequestID: id, Amount: money.MustParse("0.01"), Outcome: policy.OutcomeCharged}); err != nil {
		t.Fatal(err)
	}
}

func TestLedgerQueryNewestFirst(t *testing.T) {
	lf := newLedgerFixture(t)
	for _, r := range []string{"mcp:a/1", "mcp:a/2", "mcp:a/3"} {
		lf.charge(t, r)
	}
	resources := func(out string) string {
		var evs []ledger.Event
		if err := json.Unmarshal([]byte(out), &evs); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		var rs []string
		for _, ev := range evs {
			rs = append(rs, strings.TrimPrefix(ev.Resource, "mcp:a/"))
		}
		return strings.Join(rs, ",")
	}
	for _, tc := range []struct {
		args       []string
		want, note string
	}{
		{nil, "3,2,1", ""},
		{[]string{"--oldest-first"}, "1,2,3", ""},
		{[]string{"--limit", "2"}, "3,2", "showing 2 of 3; --limit 0 for all\n"},
		{[]string{"--limit", "2", "--oldest-first"}, "1,2", "showing 2 of 3; --limit 0 for all\n"},
		{[]string{"--limit", "3"}, "3,2,1", ""},
		{[]string{"--limit", "0"}, "3,2,1", ""},
		{[]string{"--limit", "1", "--resource", "mcp:a/2"}, "2", ""},
	} {
		out, errOut, code := lf.e.run(append([]string{"ledger", "query", "-o", "json"}, tc.args...)...)
		if code != 0 {
			t.Fatalf("ledger query %v: exit %d: %s", tc.args, code, errOut)
		}
		if got := resources(out); got != tc.want || errOut != tc.note {
			t.Errorf("ledger query %v: events %s, stderr %q; want %s, %q", tc.args, got, errOut, tc.want, tc.note)
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until cond holds, failing after a generous timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLedgerTail(t *testing.T) {
	lf := newLedgerFixture(t)
	for _, r := range []string{"mcp:a/1", "mcp:a/2", "mcp:a/3", "mcp:b/4"} {
		lf.charge(t, r)
	}
	// The first four are integrated; the fifth is still queued (seq -1).
	lf.e.ok("merkle", "integrate")
	lf.charge(t, "mcp:a/5")

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"mcp:a/1", "mcp:a/2", "mcp:a/3", "mcp:b/4", "mcp:a/5"}},
		{[]string{"-n", "2"}, []string{"mcp:b/4", "mcp:a/5"}},
		{[]string{"-n", "2", "--resource", "mcp:a/*"}, []string{"mcp:a/3", "mcp:a/5"}},
		{[]string{"-n", "0"}, nil},
	} {
		out := lf.e.ok(append([]string{"ledger", "tail", "-o", "json"}, tc.args...)...)
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var ev ledger.Event
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			got = append(got, ev.Resource)
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("ledger tail %v: %v, want %v", tc.args, got, tc.want)
		}
	}
	table := lf.e.ok("ledger", "tail", "-n", "1")
	if !strings.HasPrefix(table, "SEQ") || !strings.Contains(table, "mcp:a/5") {
		t.Errorf("ledger tail table:\n%s", table)
	}
	lf.e.fails(2, "-n: invalid count -1: want 0 or more", "ledger", "tail", "-n", "-1")

	t.Run("follow", func(t *testing.T) {
		var out syncBuffer
		f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out})
		f.Flags = GlobalFlags{Home: lf.e.home}
		t.Cleanup(f.Close)
		opts := &ledgerTailOptions{IO: f.IO, Now: time.Now, Lines: 1, Follow: true, Poll: 20 * time.Millisecond,
			Filter: eventFilterFlags{Resource: "mcp:a/*"},
			Store:  func(ctx context.Context) (tailStore, error) { return f.Store(ctx) }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runLedgerTail(ctx, opts) }()
		waitFor(t, "the last event", func() bool { return strings.Contains(out.String(), "mcp:a/5") })

		// Written and integrated by other processes; the filtered-out one
		// never shows, the one already shown is not shown again.
		lf.charge(t, "mcp:b/6")
		lf.charge(t, "mcp:a/7")
		lf.e.ok("merkle", "integrate")
		waitFor(t, "the new event", func() bool { return strings.Contains(out.String(), "mcp:a/7") })
		lf.charge(t, "mcp:a/8")
		lf.e.ok("merkle", "integrate")
		waitFor(t, "the next new event", func() bool { return strings.Contains(out.String(), "mcp:a/8") })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tail -f ended with %v, want nil on interrupt", err)
		}
		got := out.String()
		if strings.Count(got, "mcp:a/5") != 1 || strings.Contains(got, "mcp:b/6") || strings.Count(got, "SEQ") != 1 ||
			strings.Index(got, "mcp:a/7") > strings.Index(got, "mcp:a/8") {
			t.Errorf("tail -f output:\n%s", got)
		}
	})
}

func TestMerkleCheckpointListAndVerifyText(t *testing.T) {
	lf := newLedgerFixture(t)
	lf.charge(t, "mcp:a/1")
	if out := lf.e.ok("merkle", "integrate"); !strings.HasPrefix(out, "Integrated 1 event; ") {
		t.Errorf("integrate one event: %q", out)
	}
	lf.charge(t, "mcp:a/2")
	lf.charge(t, "mcp:a/3")
	if out := lf.e.ok("merkle", "integrate"); !strings.HasPrefix(out, "Integrated 2 events; ") {
		t.Errorf("integrate two events: %q", out)
	}
	var cps []ledger.CheckpointView
	lf.e.json(&cps, "merkle", "checkpoint", "list")
	// The empty tree's checkpoint comes first, written by the first run.
	if n := len(cps); n < 2 || cps[n-2].Size != 1 || cps[n-1].Size != 3 || cps[n-1].Note == "" || len(cps[n-1].Root) != 64 {
		t.Fatalf("checkpoint list: %+v", cps)
	}
	var last ledger.CheckpointView
	lf.e.json(&last, "merkle", "checkpoint")
	if last != cps[len(cps)-1] {
		t.Errorf("merkle checkpoint -o json = %+v, want the last of the list %+v", last, cps[len(cps)-1])
	}
	if out := lf.e.ok("merkle", "checkpoint", "list"); !strings.HasPrefix(out, "SIZE") || !strings.Contains(out, cps[len(cps)-1].Root) {
		t.Errorf("checkpoint list table:\n%s", out)
	}
	if out := lf.e.ok("merkle", "verify"); !strings.Contains(out, "events not re-hashed: use --full") {
		t.Errorf("plain verify does not say what it skipped:\n%s", out)
	}
	if out := lf.e.ok("merkle", "verify", "--full"); strings.Contains(out, "not re-hashed") || !strings.HasPrefix(out, "OK: 3 events, ") {
		t.Errorf("verify --full:\n%s", out)
	}
}

func TestSuggestions(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"polcy"}, "Did you mean this?\n\tpolicy\n"},
		{[]string{"ledger", "tial"}, `unknown command "tial" for "caracal ledger"` + "\n\nDid you mean this?\n\ttail\n"},
		{[]string{"agent", "key", "revok"}, "Did you mean this?\n\trevoke\n"},
		{[]string{"budget", "stats"}, "Did you mean this?\n\tstatus\n"},
	} {
		_, errOut, code := e.run(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("caracal %v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestPricebookImportDeleteJSON(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.ok("init")
	file := t.TempDir() + "/p.yaml"
	if err := os.WriteFile(file, []byte("prices:\n  - resource: mcp:a/*\n    currency: eur\n    per_call: \"0.5\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var raw json.RawMessage
	e.json(&raw, "pricebook", "import", file)
	wantKeys(t, "pricebook import", raw, "file", "imported", "rules")
	var imp pricebookImported
	if err := json.Unmarshal(raw, &imp); err != nil || imp.Imported != 1 || imp.Rules[0].Currency != "EUR" {
		t.Errorf("import JSON: %+v %v", imp, err)
	}
	if out := e.ok("pricebook", "import", file); out != "Imported 1 price rule from "+file+".\n" {
		t.Errorf("import text: %q", out)
	}
	var del struct {
		Deleted string `json:"deleted"`
	}
	e.json(&del, "pricebook", "delete", "mcp:a/*")
	if del.Deleted != "mcp:a/*" {
		t.Errorf("delete JSON: %+v", del)
	}
	e.ok("pricebook", "set", "mcp:b/*", "--per-call", "1", "--currency", "gbp")
	var r policy.PriceRule
	e.json(&r, "pricebook", "get", "mcp:b/x")
	if r.Currency != "GBP" {
		t.Errorf("pricebook set --currency gbp stored %q", r.Currency)
	}
}

func TestMerkleVerifyProofJSON(t *testing.T) {
	skey, vkey, _ := merkle.GenerateKey("example.com/log")
	s, _ := merkle.NewSigner(skey)
	leaf := merkle.Leaf{ID: "ev-1", AmountNanos: 1_500_000_000, Currency: "USD", Outcome: "charged"}
	note, _ := s.Sign(1, leaf.Hash())
	p, err := merkle.ProveInclusion(0, 1, leaf.Encode(), string(note), nil)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(p)
	var out bytes.Buffer
	opts := &merkleVerifyProofOptions{IO: &IOStreams{In: bytes.NewReader(doc), Out: &out, ErrOut: &out}, File: "-", Keys: []string{vkey}, Output: FormatJSON}
	if err := runMerkleVerifyProof(opts); err != nil {
		t.Fatal(err)
	}
	var got proofVerified
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.Kind != "inclusion" || got.Size != 1 || got.EventID != "ev-1" ||
		got.LeafIndex == nil || *got.LeafIndex != 0 || got.Origin != "example.com/log" || len(got.Root) != 64 {
		t.Errorf("verify-proof -o json: %s (%v)", out.String(), err)
	}
}

// flakyTailStore serves `ledger tail -f` from memory and fails its first
// follow polls as an unreachable database would.
type flakyTailStore struct {
	ledgerStore // unused methods
	mu          sync.Mutex
	failures    int
	events      []ledger.Event
}

func (s *flakyTailStore) TreeSize(context.Context) (int64, error) { return 0, nil }

func (s *flakyTailStore) QueryEvents(_ context.Context, f ledger.EventFilter, fn func(ledger.Event) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !f.Integrated {
		return nil // no last events
	}
	if s.failures > 0 {
		s.failures--
		return fmt.Errorf("query events: %w", ledger.ErrUnavailable)
	}
	for _, ev := range s.events {
		if ev.Seq >= f.FromSeq {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestLedgerTailFollowsThroughAnOutage(t *testing.T) {
	st := &flakyTailStore{failures: 3, events: []ledger.Event{{Seq: 0, ID: "e0", Resource: "mcp:a/0"}}}
	var out, errOut syncBuffer
	opts := &ledgerTailOptions{IO: &IOStreams{Out: &out, ErrOut: &errOut}, Now: time.Now, Follow: true, Poll: 5 * time.Millisecond,
		Output: FormatJSON, Store: func(context.Context) (tailStore, error) { return st, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runLedgerTail(ctx, opts) }()
	waitFor(t, "the event after the outage", func() bool { return strings.Contains(out.String(), "mcp:a/0") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail -f: %v", err)
	}
	if got := errOut.String(); strings.Count(got, "store unavailable") != 1 || strings.Count(got, "reachable again") != 1 {
		t.Errorf("stderr during a three-poll outage:\n%s", got)
	}
	if strings.Count(out.String(), "mcp:a/0") != 1 {
		t.Errorf("output:\n%s", out.String())
	}
}
