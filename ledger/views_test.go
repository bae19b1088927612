package ledger_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// The view and the summary embed one checkpoint shape; their JSON must keep
// the keys `merkle checkpoint -o json` and `merkle status -o json` document.
func TestCheckpointViewJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cp := ledger.Checkpoint{Size: 7, Root: []byte{0xab, 0xcd}, Note: "signed", KeyID: "k1", CreatedAt: at}
	v := ledger.ViewCheckpoint(cp)
	sum := ledger.CheckpointSummary{CheckpointView: v, AgeSeconds: 1.5}
	sum.Note = ""
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"view", v, `{"size":7,"root":"abcd","key_id":"k1","created_at":"2026-01-02T03:04:05Z","note":"signed"}`},
		{"summary", sum, `{"size":7,"root":"abcd","key_id":"k1","created_at":"2026-01-02T03:04:05Z","age_seconds":1.5}`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("%s: %s, %v\nwant %s", tc.name, b, err, tc.want)
		}
	}
}

// The API and the CLI list delegations through one filter: every delegated
// policy, or those whose child or parent the agent is.
func TestViewDelegations(t *testing.T) {
	pols := []policy.Policy{
		{ID: "own", AgentID: "a", Active: true},
		{ID: "ab", AgentID: "b", DelegatedFrom: "a", Active: true},
		{ID: "bc", AgentID: "c", DelegatedFrom: "b", Active: true},
	}
	names := map[string]string{"a": "alpha", "b": "beta", "c": "gamma"}
	for _, tc := range []struct {
		agent string
		want  []string
	}{
		{"", []string{"ab", "bc"}},
		{"a", []string{"ab"}},
		{"b", []string{"ab", "bc"}},
		{"c", []string{"bc"}},
		{"z", nil},
	} {
		var got []string
		for _, d := range ledger.ViewDelegations(pols, tc.agent, names) {
			got = append(got, d.PolicyID)
			if d.Parent != names[d.ParentID] || d.Child != names[d.ChildID] {
				t.Errorf("agent %q: %s named %q→%q", tc.agent, d.PolicyID, d.Parent, d.Child)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("agent %q: %v, want %v", tc.agent, got, tc.want)
		}
	}
	if ds := ledger.ViewDelegations(nil, "", nil); ds == nil {
		t.Error("no delegations: nil, want an empty list (JSON [])")
	}
}
