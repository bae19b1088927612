package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProxyKeepsIntegratingAfterKeyRotation rotates the signing key with
// `caracal keys rotate` while `caracal proxy` runs: the running proxy signs
// its next checkpoints with the new key, without a restart, and the whole
// log still verifies.
func TestProxyKeepsIntegratingAfterKeyRotation(t *testing.T) {
	e := newProxyEnv(t, "10")
	status := func() (size int64, keyID string, pending int64) {
		var st struct {
			TreeSize   int64 `json:"tree_size"`
			Pending    int64 `json:"pending_events"`
			Checkpoint *struct {
				Size  int64  `json:"size"`
				KeyID string `json:"key_id"`
			} `json:"checkpoint"`
		}
		if err := json.Unmarshal([]byte(e.caracal("merkle", "status", "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.Checkpoint == nil {
			return st.TreeSize, "", st.Pending
		}
		return st.Checkpoint.Size, st.Checkpoint.KeyID, st.Pending
	}
	// waitSigned waits until every event is in a checkpoint of more than
	// size events and returns its size and the key that signed it.
	waitSigned := func(size int64) (int64, string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, key, pending := status()
			if got > size && pending == 0 {
				return got, key
			}
			if time.Now().After(deadline) {
				t.Fatalf("checkpoint size %d with %d pending; want %d integrated\n%s", got, pending, size, e.stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	if code := chat(t, e.url, e.key, "gpt-4o-mini", 50); code != http.StatusOK {
		t.Fatalf("chat: %d\n%s", code, e.stderr.String())
	}
	before, oldKey := waitSigned(0)

	var rotated struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(e.caracal("keys", "rotate", "-o", "json")), &rotated); err != nil {
		t.Fatal(err)
	}
	if rotated.ID == "" || rotated.ID == oldKey {
		t.Fatalf("rotate gave key %q, old key %q", rotated.ID, oldKey)
	}

	if code := chat(t, e.url, e.key, "gpt-4o-mini", 50); code != http.StatusOK {
		t.Fatalf("chat after rotation: %d\n%s", code, e.stderr.String())
	}
	after, newKey := waitSigned(before)
	if newKey != rotated.ID {
		t.Fatalf("checkpoint after rotation signed by %q, want the new key %q", newKey, rotated.ID)
	}
	if want := "OK: " + thousands(after) + " events"; !strings.HasPrefix(e.caracal("merkle", "verify", "--full"), want) {
		t.Fatalf("verify --full does not start with %q", want)
	}
}
