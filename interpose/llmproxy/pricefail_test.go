package llmproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/fakeprovider"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// brokenPricebook is a store that authenticates agents but cannot read its
// pricebook, failing with text that must stay in the operator's log.
type brokenPricebook struct{ ledger.Store }

const storeSecret = "disk I/O error at /var/lib/caracal/secret.db"

func (brokenPricebook) ListPrices(context.Context) ([]policy.PriceRule, error) {
	return nil, errors.New(storeSecret)
}

func TestProxyPricebookFailureHidesStoreError(t *testing.T) {
	up := httptest.NewServer(fakeprovider.New(fakeprovider.Options{}))
	t.Cleanup(up.Close)
	eng, key := sqliteEngine(t, func(s ledger.Store) ledger.Store { return brokenPricebook{s} })
	px, err := New(Options{Engine: eng, Providers: []Provider{{Name: "openai", BaseURL: up.URL, APIKey: "k"}}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(px)
	t.Cleanup(front.Close)
	req, err := http.NewRequest("POST", front.URL+"/openai/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":10}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503; body %s", resp.StatusCode, body)
	}
	for _, leak := range []string{"disk I/O", "secret.db", "read pricebook"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("response body leaks store error text %q: %s", leak, body)
		}
	}
	if got := resp.Header.Get(HeaderDecision); got != string(policy.CodeUnavailable) {
		t.Errorf("%s = %q, want %q", HeaderDecision, got, policy.CodeUnavailable)
	}
}
