package cli

import (
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/apikey"
)

func TestAdminTokenCommands(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.ok("init")
	var tok struct {
		ID       string
		Name     string
		Prefix   string
		ReadOnly bool `json:"read_only"`
		Token    string
	}
	e.json(&tok, "admin", "token", "create", "--name", "dashboard", "--read-only")
	if !apikey.LooksValidWith(apikey.AdminScheme, tok.Token) || !strings.HasPrefix(tok.Token, tok.Prefix) || !tok.ReadOnly || tok.Name != "dashboard" {
		t.Fatalf("created %+v", tok)
	}
	out, errOut, code := e.run("admin", "token", "create", "--name", "ops")
	if code != 0 || !strings.Contains(out, "cra_") || !strings.Contains(out, "read and write") || !strings.Contains(errOut, "not shown again") {
		t.Fatalf("create: exit %d\n%s%s", code, out, errOut)
	}
	e.fails(1, `--name: admin token "ops" already exists`, "admin", "token", "create", "--name", "ops")
	e.fails(2, "--name: required", "admin", "token", "create")

	var list []map[string]any
	e.json(&list, "admin", "token", "list")
	if len(list) != 2 || list[0]["token"] != nil || list[0]["name"] != "dashboard" {
		t.Fatalf("list %v: want two tokens, without secrets", list)
	}
	if out := e.ok("admin", "token", "revoke", "dashboard"); !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %q", out)
	}
	e.fails(1, `admin token "`+tok.ID+`" is already revoked`, "admin", "token", "revoke", tok.ID)
	e.fails(1, `admin token "nobody" not found`, "admin", "token", "revoke", "nobody")
	e.json(&list, "admin", "token", "list")
	if list[0]["revoked_at"] == nil || list[1]["revoked_at"] != nil {
		t.Fatalf("after revoke: %v", list)
	}
	// No listing shows a secret.
	if out := e.ok("admin", "token", "list"); strings.Contains(out, tok.Token) {
		t.Fatalf("list shows a secret:\n%s", out)
	}
}
