package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/caracal-dev/caracal/internal/money"
)

// The dashboard is tested in a real headless Chromium (Debian's chromium
// package), driven over the DevTools protocol.

// chromiumFlags are the browser's flags: headless, no sandbox (CI runs as
// root), and nothing that reaches the network on its own.
var chromiumFlags = []string{"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run",
	"disable-background-networking", "disable-component-update", "disable-sync"}

// newBrowser starts Chromium with a fresh profile for the test and returns
// a tab's context; every step must finish before the test's deadline.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: apt-get install -y chromium (see .ci/run)")
	}
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800)}
	for _, f := range chromiumFlags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelT := chromedp.NewContext(actx)
	// The whole browser session takes about 25 s on an idle machine; under
	// make test, Chromium shares two cores with race-enabled package tests,
	// so the bound is generous and only catches a page that never shows
	// what it should. (A run that hit it, at eight minutes, was not slow:
	// a late Overview had drawn itself over the agent page; staleRoute
	// checks that this no longer happens.)
	ctx, cancelD := context.WithTimeout(ctx, 8*time.Minute)
	t.Cleanup(func() { cancelD(); cancelT(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser steps, failing the test with what was being done.
func do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	start := time.Now()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("%s took %v", what, d.Round(time.Millisecond))
	}
}

// void drops an action's value.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

func runB[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// screenshots go to a temporary folder, or with CARACAL_UPDATE_SCREENSHOTS=1
// to docs/img, where docs/dashboard.md shows them.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "caracal-dashboard-screenshots")
	if os.Getenv("CARACAL_UPDATE_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "docs", "img")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Let the page settle (fonts, the new-row highlight) before the picture.
	b := runB(t, ctx, "screenshot "+name, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", filepath.Join(dir, name+".png"))
}

// chat makes one chat completion through `caracal proxy` and returns the
// ledger event it charged.
func (e *proxyEnv) chat(t *testing.T) ledgerEvent {
	t.Helper()
	before := len(e.ledger())
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hello dashboard"}],"max_tokens":20}`
	req, _ := http.NewRequest(http.MethodPost, e.url+"/openai/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("chat through the proxy: %d %s", res.StatusCode, b)
	}
	evs := e.ledger()
	if len(evs) != before+1 || evs[len(evs)-1].Outcome != "charged" {
		t.Fatalf("ledger after the call: %+v", evs)
	}
	return evs[len(evs)-1]
}

// seqOf reads the seq of a request's event, which must be in the tree.
func (e *proxyEnv) seqOf(t *testing.T, requestID string) int64 {
	t.Helper()
	for _, ev := range e.ledger() {
		if ev.RequestID == requestID && ev.Seq >= 0 {
			return ev.Seq
		}
	}
	t.Fatalf("request %s has no event in the tree", requestID)
	return -1
}

// eventID reads an event's ID (ledgerEvent has no ID member).
func (e *proxyEnv) eventID(t *testing.T, requestID string) string {
	t.Helper()
	var evs []struct {
		ID        string `json:"id"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(e.caracal("ledger", "query", "-o", "json", "--limit", "0")), &evs); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.RequestID == requestID {
			return ev.ID
		}
	}
	t.Fatalf("no event of request %s", requestID)
	return ""
}

func signIn(t testing.TB, ctx context.Context, base, token string) {
	t.Helper()
	do(t, ctx, "sign in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("nav")),
	)
}

func TestDashboard(t *testing.T) {
	e := newProxyEnv(t, "10")
	h := &home{t: t, dir: e.home}
	admin := h.adminToken("ops", false)
	viewer := h.adminToken("viewer", true)
	base := startServe(t, h)

	// Known spending before the browser looks: one call through the proxy.
	first := e.chat(t)
	spent := money.MustParse(first.Amount)
	remaining, err := money.MustParse("10").Sub(spent)
	if err != nil {
		t.Fatal(err)
	}

	ctx := newBrowser(t)
	signIn(t, ctx, base, admin)

	// Page weight of the Overview page, cold: every byte the browser
	// received for it (the live stream stays open and is not counted).
	var weight atomic.Int64
	var requests atomic.Int64
	if err := chromedp.Listen(ctx, func(ev any) {
		if lf, ok := ev.(*network.EventLoadingFinished); ok {
			weight.Add(int64(lf.EncodedDataLength))
			requests.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
		t.Fatal(err)
	}
	// Leave the page first: a change of the hash alone loads nothing.
	do(t, ctx, "blank", chromedp.Navigate("about:blank"))
	weight.Store(0)
	requests.Store(0)
	do(t, ctx, "overview", chromedp.Navigate(base+"/#/overview"), chromedp.WaitVisible(chromedp.ID("total-spend")))
	total := runB(t, ctx, "overview total", chromedp.Text(chromedp.ID("total-spend")))
	if total != first.Amount+" USD" {
		t.Errorf("overview: charged today %q, want %q", total, first.Amount+" USD")
	}
	t.Logf("page weight: Overview transferred %d bytes in %d requests (cache disabled)", weight.Load(), requests.Load())
	screenshot(t, ctx, "overview")

	// Budgets: the exact remaining amount, as text.
	do(t, ctx, "budgets", chromedp.Navigate(base+"/#/budgets"), chromedp.WaitVisible(chromedp.CSS(".budget .remaining")))
	if got := runB(t, ctx, "remaining", chromedp.Text(chromedp.CSS(".budget .remaining"))); got != remaining.String()+" USD" {
		t.Errorf("budgets page: remaining %q, want %q (10 - %s)", got, remaining.String()+" USD", first.Amount)
	}
	screenshot(t, ctx, "budgets")

	// Ledger: a call made through the proxy appears without a reload. A
	// marker on window survives only if the page was not reloaded.
	do(t, ctx, "ledger", chromedp.Navigate(base+"/#/ledger"), chromedp.WaitVisible(chromedp.CSS("#ledger-table tbody tr")),
		void(chromedp.Evaluate[any](`window.__noReload = true`)))
	rows := runB(t, ctx, "rows", chromedp.Evaluate[int](`document.querySelectorAll("#ledger-table tbody tr").length`))
	second := e.chat(t)
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(wait, chromedp.Poll[bool](fmt.Sprintf(`document.querySelectorAll("#ledger-table tbody tr").length > %d && window.__noReload === true`, rows))); err != nil {
		t.Fatalf("the new event did not appear on the ledger page without a reload: %v", err)
	}
	// The stream sends events once they are in the tree: both have their
	// seq by now.
	first.Seq, second.Seq = e.seqOf(t, first.RequestID), e.seqOf(t, second.RequestID)
	top := runB(t, ctx, "top row", chromedp.Evaluate[[]string](`[...document.querySelector("#ledger-table tbody tr").cells].map((c) => c.textContent)`))
	if len(top) < 6 || top[0] != fmt.Sprint(second.Seq) || top[3] != "llm:openai/gpt-4o" || top[5] != second.Amount+" USD" {
		t.Errorf("top row %q: want the new event seq %d of %s USD", top, second.Seq, second.Amount)
	}
	screenshot(t, ctx, "ledger")

	// The CSV export link works with the session cookie alone.
	csv := runB(t, ctx, "csv export", chromedp.Evaluate[string](`fetch(document.querySelector("a[download]").href).then((r) => r.text())`, chromedp.EvalAwaitPromise))
	if !strings.HasPrefix(csv, "seq,id,time,") || strings.Count(csv, "\n") != 3 {
		t.Errorf("CSV export through the page's link:\n%s", csv)
	}

	// Filters and cursor paging, one event a page.
	rowsOf := func(hash string) string {
		// A fresh load each time: a new hash alone would re-render the
		// same document, and the old table would answer the wait.
		do(t, ctx, hash, chromedp.Navigate("about:blank"), chromedp.Navigate(base+"/"+hash), chromedp.WaitVisible(chromedp.ID("ledger-table")))
		return runB(t, ctx, "rows of "+hash, chromedp.Evaluate[string](`[...document.querySelectorAll("#ledger-table tbody tr")].map((r) => r.cells[0].textContent).join(",")`))
	}
	for hash, want := range map[string]string{
		"#/ledger?outcome=denied":              "",
		"#/ledger?outcome=charged&agent=bot":   fmt.Sprintf("%d,%d", second.Seq, first.Seq),
		"#/ledger?resource=llm:anthropic/*":    "",
		"#/ledger?resource=llm:openai/gpt-4o*": fmt.Sprintf("%d,%d", second.Seq, first.Seq),
		"#/ledger?until=2020-01-01T00:00:00Z":  "",
		"#/ledger?limit=1":                     fmt.Sprint(second.Seq),
	} {
		if got := rowsOf(hash); got != want {
			t.Errorf("%s: rows %q, want %q", hash, got, want)
		}
	}
	rowsOf("#/ledger?limit=1")
	do(t, ctx, "older page", chromedp.Click(chromedp.ID("older")), chromedp.WaitVisible(chromedp.ID("newest")))
	if got := runB(t, ctx, "older page rows", chromedp.Evaluate[string](`[...document.querySelectorAll("#ledger-table tbody tr")].map((r) => r.cells[0].textContent).join(",")`)); got != fmt.Sprint(first.Seq) {
		t.Errorf("the older page holds %q, want seq %d", got, first.Seq)
	}
	if n := runB(t, ctx, "last page", chromedp.Evaluate[int](`document.querySelectorAll("#older").length`)); n != 0 {
		t.Error("the last page links to an older one")
	}

	// The keyboard reaches every page: a nav link, Enter.
	do(t, ctx, "keyboard", chromedp.Focus(chromedp.CSS(`#nav a[href="#/budgets"]`)), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(".budget .remaining")))
	if f := runB(t, ctx, "focus", chromedp.Evaluate[string](`document.activeElement.tagName + ":" + document.activeElement.textContent`)); f != "H1:Budgets" {
		t.Errorf("after following a nav link with the keyboard the focus is on %q, want the page's heading", f)
	}

	// Integrity: verify a real event in the page.
	id := e.eventID(t, first.RequestID)
	do(t, ctx, "integrity", chromedp.Navigate(base+"/#/integrity?event="+id), chromedp.WaitVisible(chromedp.CSS("#verdict .verdict")))
	if v := runB(t, ctx, "verdict", chromedp.Text(chromedp.ID("verdict"))); !strings.Contains(v, "Verified") {
		steps := runB(t, ctx, "steps", chromedp.Text(chromedp.ID("verify-steps")))
		t.Fatalf("verify a real event: %q\n%s", v, steps)
	}
	if n := runB(t, ctx, "failed steps", chromedp.Evaluate[int](`document.querySelectorAll("#verify-steps li.fail").length`)); n != 0 {
		t.Errorf("%d failed steps on a real event", n)
	}
	screenshot(t, ctx, "integrity")

	// The same check with one hash of the proof changed on its way to the
	// page: the browser's fetch interception rewrites the response.
	tamperProofs(t, ctx)
	do(t, ctx, "verify a tampered proof", void(chromedp.Evaluate[any](`document.querySelector("#verdict").replaceChildren()`)),
		chromedp.Click(chromedp.ID("verify-btn")), chromedp.WaitVisible(chromedp.CSS("#verdict .verdict")))
	if v := runB(t, ctx, "verdict", chromedp.Text(chromedp.ID("verdict"))); !strings.Contains(v, "FAILED") {
		t.Errorf("a tampered proof: verdict %q, want a failure", v)
	}
	if n := runB(t, ctx, "failed steps", chromedp.Evaluate[int](`document.querySelectorAll("#verify-steps li.fail").length`)); n == 0 {
		t.Error("a tampered proof: no step failed")
	}
	do(t, ctx, "show the failed step", chromedp.ScrollIntoView(chromedp.CSS("#verify-steps li.fail")))
	screenshot(t, ctx, "integrity-tampered")
	if _, err := chromedp.Call(ctx, fetch.Disable, struct{}{}); err != nil {
		t.Fatal(err)
	}

	// Agent: an admin token sees the buttons; a new key is shown once.
	do(t, ctx, "agent", chromedp.Navigate(base+"/#/agent/bot"), chromedp.WaitVisible(chromedp.ID("btn-suspend")),
		chromedp.Click(chromedp.ID("btn-create-key")), chromedp.WaitVisible(chromedp.ID("new-key")))
	if k := runB(t, ctx, "new key", chromedp.Text(chromedp.ID("new-key"))); !strings.HasPrefix(k, "crk_") {
		t.Errorf("new key %q", k)
	}
	screenshot(t, ctx, "agent")

	// A narrow window (a phone) still shows the ledger.
	do(t, ctx, "narrow", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/#/ledger"), chromedp.WaitVisible(chromedp.CSS("#ledger-table tbody tr")))
	screenshot(t, ctx, "ledger-narrow")
	do(t, ctx, "wide again", chromedp.EmulateViewport(1280, 800))

	staleRoute(t, ctx)

	// A cross-site page posts to the API with the browser's cookies: with
	// no CSRF token (and a foreign origin) it is refused, and the agent
	// stays active.
	crossSite(t, ctx, base)

	// Read-only: sign out, sign in with the read-only token.
	do(t, ctx, "sign out", chromedp.Navigate(base+"/#/overview"), chromedp.WaitVisible(chromedp.ID("signout")),
		chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("token")))
	signIn(t, ctx, base, viewer)
	do(t, ctx, "agent as viewer", chromedp.Navigate(base+"/#/agent/bot"), chromedp.WaitVisible(chromedp.ID("agent-status")))
	if n := runB(t, ctx, "buttons", chromedp.Evaluate[int](`document.querySelectorAll("#btn-suspend, #btn-resume, #btn-create-key").length`)); n != 0 {
		t.Errorf("read-only token: %d change buttons on the agent page, want none", n)
	}
	// The page's own same-origin request, with the CSRF token, is refused
	// by the API all the same.
	status := runB(t, ctx, "suspend as viewer", chromedp.Evaluate[int](`(async () => {
		const csrf = document.cookie.split("; ").find((c) => c.startsWith("caracal_csrf=")).slice(13);
		const res = await fetch("/v1/agents/bot/suspend", {method: "POST", headers: {"X-CSRF-Token": csrf}});
		return res.status;
	})()`, chromedp.EvalAwaitPromise))
	if status != http.StatusForbidden {
		t.Errorf("read-only session suspending an agent: %d, want 403", status)
	}
	c := client{t: t, base: base, token: viewer}
	c.problem(http.StatusForbidden, "forbidden", http.MethodPost, "/v1/agents/bot/suspend", nil)
	var ag struct{ Status string }
	client{t: t, base: base, token: admin}.ok(http.StatusOK, http.MethodGet, "/v1/agents/bot", nil, &ag)
	if ag.Status != "active" {
		t.Errorf("agent status %q after refused suspensions, want active", ag.Status)
	}
	screenshot(t, ctx, "agent-read-only")
}

// tamperProofs makes the browser change the first path hash of every
// inclusion proof the page fetches from now on.
func tamperProofs(t *testing.T, ctx context.Context) {
	t.Helper()
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/v1/merkle/proofs/inclusion*", RequestStage: fetch.RequestStageResponse}}}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			body, err := chromedp.Call(ctx, fetch.GetResponseBody, fetch.GetResponseBodyParams{RequestID: ev.RequestID})
			if err != nil {
				return
			}
			var p map[string]any
			out := body.Body
			if json.Unmarshal(body.Body, &p) == nil {
				if path, ok := p["proof"].([]any); ok && len(path) > 0 {
					h := []byte(path[0].(string))
					h[0] = "01"[map[bool]int{true: 1, false: 0}[h[0] == '0']]
					path[0] = string(h)
				} else if lh, ok := p["leaf_hash"].(string); ok {
					p["leaf_hash"] = "ff" + lh[2:]
				}
				out, _ = json.Marshal(p)
			}
			_, _ = chromedp.Call(ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{RequestID: ev.RequestID, ResponseCode: ev.ResponseStatusCode, ResponseHeaders: ev.ResponseHeaders, Body: out})
		}
	}()
}

// staleRoute checks that a page whose data arrives after the user has
// moved on does not replace the page they moved to. Under load, the
// Overview (six requests) can finish after a page opened later (two), and
// used to draw itself over it. The browser holds the Overview's summary
// requests back until the agent page is shown, then lets them go.
func staleRoute(t *testing.T, ctx context.Context) {
	t.Helper()
	ectx, stop := context.WithCancel(ctx)
	defer stop()
	held := make(chan fetch.RequestID, 16)
	go func() {
		for ev, err := range chromedp.Events(ectx, fetch.RequestPaused) {
			if err != nil {
				return
			}
			held <- ev.RequestID
		}
	}()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/v1/ledger/summary*"}}}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "overview, held back", void(chromedp.Evaluate[any](`location.hash = "#/overview?window=7d"`)))
	var ids []fetch.RequestID
	next := func(what string) {
		select {
		case id := <-held:
			ids = append(ids, id)
		case <-time.After(time.Minute):
			t.Fatalf("%s: the overview's summary requests were not held", what)
		}
	}
	next("first")
	do(t, ctx, "agent while the overview loads", void(chromedp.Evaluate[any](`location.hash = "#/agent/bot"`)), chromedp.WaitVisible(chromedp.ID("agent-status")))
	for len(ids) < 3 { // the Overview asks for three summaries
		next("all three")
	}
	if _, err := chromedp.Call(ctx, fetch.Disable, struct{}{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		// A request the page has since aborted is no longer held, and
		// continuing it fails; that is the outcome wanted.
		_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: id})
	}
	// Had the Overview gone on, it would draw itself within milliseconds of
	// its answers; three seconds without it is a pass.
	wait, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := chromedp.Run(wait, chromedp.Poll[bool](`document.querySelector("#page h1")?.textContent !== "Agent bot"`))
	switch {
	case err == nil:
		title := runB(t, ctx, "title", chromedp.Evaluate[string](`document.querySelector("#page h1")?.textContent ?? ""`))
		t.Errorf("a page that finished loading after the agent page replaced it: the page shows %q", title)
	case !errors.Is(err, context.DeadlineExceeded):
		t.Fatal(err)
	}
}

// crossSite serves a page on another origin (localhost, where the
// dashboard is 127.0.0.1) whose form posts to the API as soon as it loads.
func crossSite(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form id="f" method="POST" action="%s/v1/agents/bot/suspend" enctype="text/plain"><input name="x" value="y"></form><script>document.getElementById("f").submit()</script>`, base)
	}))
	defer evil.Close()
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)
	do(t, ctx, "cross-site form", chromedp.Navigate(evilURL), void(chromedp.Poll[bool](`location.href.includes("/v1/agents/bot/suspend") && document.readyState === "complete"`)))
	answer := runB(t, ctx, "cross-site answer", chromedp.Evaluate[string](`document.body.innerText`))
	if !strings.Contains(answer, `"status":40`) {
		t.Errorf("cross-site POST answered %q, want a 401 or 403 problem", answer)
	}

	// The same POST with the session cookie itself (as a browser without
	// SameSite would send it) but a foreign Origin and no CSRF token.
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/agents/bot/suspend", bytes.NewReader(nil))
	n := 0
	for _, c := range cookies.Cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		if c.Name == "caracal_session" {
			n++
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				t.Errorf("session cookie %+v: want HttpOnly and SameSite=Strict", c)
			}
		}
	}
	if n != 1 {
		t.Fatalf("no session cookie in the browser: %+v", cookies.Cookies)
	}
	req.Header.Set("Origin", evilURL)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST with the session cookie and no CSRF token: %d %s, want 403", res.StatusCode, b)
	}
}
