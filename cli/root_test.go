package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/pgtest"
)

// TestMain stops the throwaway PostgreSQL cluster, if a test started one.
func TestMain(m *testing.M) { pgtest.Main(m) }

// cliEnv runs command lines the way the caracal process does, each with a
// fresh Factory, against one home and (for PostgreSQL) one database.
type cliEnv struct {
	t     *testing.T
	home  string
	dbURL string
	now   func() time.Time
}

// backends are the stores every end-to-end CLI test runs against.
var backends = []string{"sqlite", "postgres"}

// newCLIEnv returns an environment with an empty home, isolated from the
// machine's CARACAL_* variables.
func newCLIEnv(t *testing.T, backend string) *cliEnv {
	t.Helper()
	for _, k := range []string{"CARACAL_HOME", "CARACAL_CONFIG", "CARACAL_DATABASE_URL", "CARACAL_PRICING_DEFAULT",
		"CARACAL_PRICING_CURRENCY", "CARACAL_PRICING_STRICT", "CARACAL_PRICING_UNPRICED_LLM", "CARACAL_ENFORCEMENT_UNBUDGETED", "CARACAL_DELEGATION_MAX_DEPTH", "CARACAL_MCP_LISTEN", "CARACAL_PROXY_LISTEN"} {
		t.Setenv(k, "")
	}
	e := &cliEnv{t: t, home: t.TempDir() + "/home"}
	if backend == "postgres" {
		e.dbURL = pgtest.URL(t)
	}
	return e
}

func (e *cliEnv) args(args []string) []string {
	full := append([]string{"--home", e.home}, args...)
	if e.dbURL != "" {
		full = append(full, "--database-url", e.dbURL)
	}
	return full
}

// run executes one command line and returns its output and exit code.
func (e *cliEnv) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.runIn("", args...)
}

func (e *cliEnv) runIn(stdin string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	var out, errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	if e.now != nil {
		f.Now = e.now
	}
	code = Execute(context.Background(), f, e.args(args))
	return out.String(), errOut.String(), code
}

// ok runs a command line that must succeed and returns its standard output.
func (e *cliEnv) ok(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("caracal %s: exit %d\nstderr: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// json runs a command line with -o json and decodes its output into v.
func (e *cliEnv) json(v any, args ...string) {
	e.t.Helper()
	out := e.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("caracal %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// fails runs a command line that must fail with exactly wantErr (without
// the "caracal: " prefix and newline) and wantCode.
func (e *cliEnv) fails(wantCode int, wantErr string, args ...string) {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if got, want := errOut, "caracal: "+wantErr+"\n"; got != want || code != wantCode {
		e.t.Errorf("caracal %s:\n got exit %d, stderr %q\nwant exit %d, stderr %q\nstdout: %s",
			strings.Join(args, " "), code, got, wantCode, want, out)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err      error
		code     int
		printed  string
		viaCobra bool
	}{
		{nil, 0, "", false},
		{Usagef("--x: bad"), 2, "caracal: --x: bad\n", false},
		{&SilentExit{Code: 3}, 3, "", false},
		{context.Canceled, 1, "caracal: context canceled\n", false},
	} {
		var buf bytes.Buffer
		if got := ExitCode(&buf, tc.err); got != tc.code || buf.String() != tc.printed {
			t.Errorf("ExitCode(%v) = %d, %q; want %d, %q", tc.err, got, buf.String(), tc.code, tc.printed)
		}
	}
}

func TestUsageErrorsFromCobra(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.fails(2, `unknown command "frob" for "caracal"`, "frob")
	e.fails(2, `unknown command "frob" for "caracal agent"`, "agent", "frob")
	e.fails(2, `unknown command "frob" for "caracal agent key"`, "agent", "key", "frob")
	e.fails(2, `unknown flag: --nope`, "agent", "list", "--nope")
	e.fails(2, `agent get: missing argument NAME|ID`, "agent", "get")
	e.fails(2, `agent list: unexpected argument "extra"`, "agent", "list", "extra")
	e.fails(2, `invalid argument "xml" for "-o, --output" flag: unknown format "xml": want table or json`, "agent", "list", "-o", "xml")
	e.fails(2, `invalid argument "xml" for "-o, --output" flag: unknown format "xml": want table, json or csv`, "ledger", "query", "-o", "xml")
	if out, _, code := e.run("agent"); code != 0 || !strings.Contains(out, "Available Commands") {
		t.Errorf("caracal agent: exit %d, want help and 0:\n%s", code, out)
	}
}
