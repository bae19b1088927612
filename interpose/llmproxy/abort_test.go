package llmproxy

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/caracal-dev/caracal/policy"
)

// TestAbortEndsStreamsUnconfirmed aborts the proxy while a stream is
// relayed: the stream ends long before the provider would have finished
// it, and the call, relayed but without its usage, is charged unconfirmed.
func TestAbortEndsStreamsUnconfirmed(t *testing.T) {
	h := newHarness(t, "100", nil)
	req := h.request(context.Background(), "POST", "/openai/v1/chat/completions", "crk_good",
		`{"model":"gpt-4o","messages":[],"stream":true,"max_tokens":50}`,
		map[string]string{"Fake-Chunk-Delay": "1h"})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	h.px.Abort()
	// The stream ends (cut) instead of waiting an hour for the next chunk.
	_, _ = io.Copy(io.Discard, resp.Body)
	waitSettled(t, h.eng)
	evs := h.eng.finished()
	if len(evs) != 1 || evs[0].Outcome != policy.OutcomeUnconfirmed {
		t.Fatalf("events %+v: want the call charged unconfirmed", evs)
	}
}
