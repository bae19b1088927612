package llmproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/apikey"
	"github.com/caracal-dev/caracal/internal/fakeprovider"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/policy"
)

// Benchmarks of the proxy's cost. Each reports, besides ns/op:
//
//	direct-p50-µs, direct-p99-µs  the fake provider called directly
//	proxy-p50-µs,  proxy-p99-µs   the same requests through the proxy
//	added-p50-µs,  added-p99-µs   the difference
//	req/s                         proxied requests per second
//
// Latency is to the end of the response for plain requests and to the
// first body byte (TTFB) for streams. "bare" is no Caracal at all but a
// plain net/http/httputil.ReverseProxy with the same upstream transport
// settings, the least any HTTP reverse proxy adds; "memory" runs the proxy
// over an in-memory engine (the proxy's own overhead); "sqlite" over the
// real engine on a durable SQLite store (what a user gets).

const (
	benchChat   = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello."}],"max_tokens":100}`
	benchStream = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello."}],"max_tokens":100,"stream":true}`
)

type benchEnv struct {
	direct, proxied string
	key             string
	client          *http.Client
}

func newBenchEnv(b *testing.B, engine string) *benchEnv {
	b.Helper()
	up := httptest.NewServer(fakeprovider.New(fakeprovider.Options{}))
	b.Cleanup(up.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	client := &http.Client{Transport: tr}
	if engine == "bare" {
		front := httptest.NewServer(bareProxy(b, up.URL))
		b.Cleanup(front.Close)
		return &benchEnv{direct: up.URL, proxied: front.URL, key: "crk_good", client: client}
	}
	var eng Engine
	key := "crk_good"
	switch engine {
	case "memory":
		eng = newFakeEngine(money.Max, testRules...)
	case "sqlite":
		eng, key = sqliteEngine(b, nil)
	}
	px, err := New(Options{Engine: eng, Providers: []Provider{{Name: "openai", BaseURL: up.URL, APIKey: "k"}}})
	if err != nil {
		b.Fatal(err)
	}
	front := httptest.NewServer(px)
	b.Cleanup(front.Close)
	return &benchEnv{direct: up.URL, proxied: front.URL + "/openai", key: key, client: client}
}

// bareProxy is the baseline reverse proxy: httputil.ReverseProxy to target
// with the upstream transport New builds (keep-alive pool sizes) and
// immediate flushing, and nothing else. It streams the request body
// upstream while the response may already be streaming back, so it turns
// on full duplex: otherwise the HTTP/1 server closes the request body when
// the response headers are flushed, and the transport, still reading the
// body to its end, drops the upstream connection mid-response. (Caracal's
// proxy reads the whole body before relaying it and needs no such thing.)
func bareProxy(b *testing.B, target string) http.Handler {
	u, err := url.Parse(target)
	if err != nil {
		b.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	tr.MaxIdleConns = 1024
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(u) },
		Transport:     tr,
		FlushInterval: -1,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// sqliteEngine is the real engine over a durable SQLite store holding one
// agent with a key (returned), a policy and testRules; wrap, if not nil,
// wraps the store the engine uses.
func sqliteEngine(b testing.TB, wrap func(ledger.Store) ledger.Store) (*interpose.Engine, string) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "caracal.db"), sqlite.Options{SkipSchemaCheck: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if _, err := s.MigrateUp(ctx); err != nil {
		b.Fatal(err)
	}
	var st ledger.Store = s
	a, err := st.CreateAgent(ctx, ledger.NewAgent{Name: "bench", Owner: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	secret, hash, prefix, err := apikey.Generate()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.CreateKey(ctx, a.ID, hash, prefix, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := st.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: money.MustParse("1000000000"), Currency: "USD", Window: policy.WindowTotal, WindowType: policy.WindowCalendar, Timezone: "UTC"}); err != nil {
		b.Fatal(err)
	}
	if err := st.ImportPrices(ctx, testRules); err != nil {
		b.Fatal(err)
	}
	if wrap != nil {
		st = wrap(st)
	}
	return interpose.New(interpose.Options{Store: st}), secret
}

// one sends a request and returns its latency: to the end of the body, or
// to the first body byte when ttfb.
func (e *benchEnv) one(base, body string, ttfb bool) (time.Duration, error) {
	req, err := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+e.key)
	start := time.Now()
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var d time.Duration
	if ttfb {
		var one [1]byte
		if _, err := io.ReadFull(resp.Body, one[:]); err != nil {
			return 0, err
		}
		d = time.Since(start)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	if !ttfb {
		d = time.Since(start)
	}
	return d, nil
}

// run sends n requests with c workers and returns their latencies and the
// elapsed time.
func (e *benchEnv) run(b *testing.B, base, body string, ttfb bool, n, c int) ([]time.Duration, time.Duration) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				d, err := e.one(base, body, ttfb)
				if err != nil {
					b.Error(err)
					return
				}
				lat[i] = d
			}
		}()
	}
	wg.Wait()
	return lat, time.Since(start)
}

func pct(lat []time.Duration, p float64) float64 {
	s := slices.Clone(lat)
	slices.Sort(s)
	return float64(s[int(float64(len(s)-1)*p)].Nanoseconds()) / 1e3
}

func BenchmarkAddedLatency(b *testing.B) {
	for _, engine := range []string{"bare", "memory", "sqlite"} {
		for _, kind := range []string{"plain", "stream-ttfb"} {
			for _, c := range []int{1, 64} {
				b.Run(fmt.Sprintf("%s/%s/c%d", engine, kind, c), func(b *testing.B) {
					e := newBenchEnv(b, engine)
					body, ttfb := benchChat, false
					if kind == "stream-ttfb" {
						body, ttfb = benchStream, true
					}
					n := max(b.N, c)
					e.run(b, e.direct, body, ttfb, min(n, 200), c) // warm connections
					e.run(b, e.proxied, body, ttfb, min(n, 200), c)
					b.ResetTimer()
					direct, _ := e.run(b, e.direct, body, ttfb, n, c)
					proxied, elapsed := e.run(b, e.proxied, body, ttfb, n, c)
					b.StopTimer()
					if b.Failed() {
						return
					}
					b.ReportMetric(pct(direct, 0.5), "direct-p50-µs")
					b.ReportMetric(pct(direct, 0.99), "direct-p99-µs")
					b.ReportMetric(pct(proxied, 0.5), "proxy-p50-µs")
					b.ReportMetric(pct(proxied, 0.99), "proxy-p99-µs")
					b.ReportMetric(pct(proxied, 0.5)-pct(direct, 0.5), "added-p50-µs")
					b.ReportMetric(pct(proxied, 0.99)-pct(direct, 0.99), "added-p99-µs")
					b.ReportMetric(float64(n)/elapsed.Seconds(), "req/s")
				})
			}
		}
	}
}

// BenchmarkThroughput is proxied requests per second at concurrency 64
// against a zero-delay provider, on the real engine and SQLite, and
// through the bare httputil.ReverseProxy as the baseline.
func BenchmarkThroughput(b *testing.B) {
	for _, engine := range []string{"bare", "sqlite"} {
		for _, kind := range []string{"plain", "stream"} {
			b.Run(engine+"/"+kind+"/c64", func(b *testing.B) {
				throughput(b, engine, kind)
			})
		}
	}
}

func throughput(b *testing.B, engine, kind string) {
	e := newBenchEnv(b, engine)
	body := benchChat
	if kind == "stream" {
		body = benchStream
	}
	e.run(b, e.proxied, body, false, 200, 64)
	b.ResetTimer()
	_, elapsed := e.run(b, e.proxied, body, false, max(b.N, 64), 64)
	b.ReportMetric(float64(max(b.N, 64))/elapsed.Seconds(), "req/s")
}
