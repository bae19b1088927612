package ledger_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/ledger"
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
