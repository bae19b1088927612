package sqlstore

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/caracal-dev/caracal/policy"
)

func TestLeaseSize(t *testing.T) {
	tests := []struct {
		name           string
		headroom, need int64
		holders        int
		tight          bool
		want           int64
	}{
		{"far from the limit, one holder: half", 1000, 10, 1, false, 500},
		{"two holders: a quarter", 1000, 10, 2, false, 250},
		{"capped at 1024 calls", 1 << 40, 1, 1, false, 1024},
		{"share under four calls: one call", 70, 10, 1, false, 10},
		{"exactly the last call", 10, 10, 1, false, 10},
		{"does not fit", 9, 10, 1, false, 0},
		{"no headroom", 0, 0, 1, false, 0},
		{"over the limit", -5, 1, 1, false, 0},
		{"tight: one call", 1000, 10, 1, true, 10},
		{"no holders counts as one", 1000, 10, 0, false, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := leaseSize(tt.headroom, tt.need, tt.holders, tt.tight); got != tt.want {
				t.Fatalf("leaseSize(%d, %d, %d, %v) = %d, want %d", tt.headroom, tt.need, tt.holders, tt.tight, got, tt.want)
			}
		})
	}
}

// TestBookAccounting walks one lease through admissions, finishes here
// and elsewhere, an overrun and folds, checking what is left after each.
func TestBookAccounting(t *testing.T) {
	var b book
	k := leaseKey{policyID: "p", bucket: 0}
	l := b.ensure(k, policy.Policy{ID: "p"})
	l.grant = 100
	step := func(name string, wantAvail, wantGrant int64) {
		t.Helper()
		if l.avail() != wantAvail || l.grant != wantGrant {
			t.Fatalf("%s: avail %d grant %d, want %d and %d", name, l.avail(), l.grant, wantAvail, wantGrant)
		}
	}
	keys := []leaseKey{k}
	if !b.fits(keys, 100) || b.fits(keys, 101) {
		t.Fatal("fits disagrees with the grant")
	}
	b.admit("a", keys, 40)
	b.admit("b", keys, 30)
	b.admit("c", keys, 20)
	step("three admitted", 10, 100)
	b.finish("a", 25) // the unused 15 is free again at once
	step("a settled for 25", 25, 100)
	b.fold(k, "a", 40, 25) // the charge leaves the lease
	step("a folded", 25, 75)
	b.fold(k, "b", 30, 5) // b finished in another process, folded
	step("b folded", 50, 70)
	b.finish("b", 5) // the late news of b changes nothing
	step("b finished after its fold", 50, 70)
	b.finish("c", 35) // an overrun: the lease covers only the 20 reserved
	step("c overran", 50, 70)
	if l.baseSpent != 25+5+15 {
		t.Fatalf("base spent %d, want the folded charges and the overrun's excess", l.baseSpent)
	}
	b.fold(k, "c", 20, 35)
	step("c folded", 50, 50)
	b.admit("d", keys, 50)
	b.unadmit("d")
	step("d admitted then undone", 50, 50)
	if len(b.held) != 0 || len(l.entries) != 0 || l.open != 0 || l.charged != 0 {
		t.Fatalf("left behind: held %v entries %v open %d charged %d", b.held, l.entries, l.open, l.charged)
	}
	l.frozen = true
	if b.fits(keys, 1) {
		t.Fatal("a frozen lease admitted")
	}
}

func TestDeadHere(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	tests := []struct {
		name string
		want bool
	}{
		{fmt.Sprintf("%s:%d", host, cmd.Process.Pid), true},
		{holderName(), false},
		{fmt.Sprintf("elsewhere-%s:%d", host, cmd.Process.Pid), false},
		{host + ":not-a-pid", false},
		{"no-colon", false},
	}
	for _, tt := range tests {
		if got := deadHere(tt.name); got != tt.want {
			t.Errorf("deadHere(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
