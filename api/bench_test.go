package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/caracal-dev/caracal/internal/apikey"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/policy"
)

// BenchmarkRoundTrip measures reservation + settlement round trips per
// second, through the Go interpose.Engine and through the HTTP API (a real
// loopback connection, keep-alive), at concurrency 1 and 32, over the same
// kind of SQLite store. docs/BENCHMARKS.md records the numbers.
func BenchmarkRoundTrip(b *testing.B) {
	for _, conc := range []int{1, 32} {
		b.Run(fmt.Sprintf("engine/c%d", conc), func(b *testing.B) {
			_, eng, agentID, _ := benchSetup(b)
			ctx := context.Background()
			run(b, conc, func() error {
				t, d := eng.Begin(ctx, interpose.Call{AgentID: agentID, Resource: "http:bench/op", Operation: "reserve"})
				if t == nil {
					return fmt.Errorf("denied: %s", d.Reason)
				}
				_, err := eng.Settle(ctx, t, interpose.Result{})
				return err
			})
		})
		b.Run(fmt.Sprintf("api/c%d", conc), func(b *testing.B) {
			st, eng, _, key := benchSetup(b)
			srv := benchServer(b, st, eng)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			body := []byte(`{"resource":"http:bench/op"}`)
			post := func(path string, body []byte, want int, v any) error {
				req, err := http.NewRequest("POST", srv.URL+path, bytes.NewReader(body))
				if err != nil {
					return err
				}
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/json")
				res, err := client.Do(req)
				if err != nil {
					return err
				}
				defer res.Body.Close()
				if res.StatusCode != want {
					b, _ := io.ReadAll(res.Body)
					return fmt.Errorf("%s: %d %s", path, res.StatusCode, b)
				}
				if v == nil {
					_, err = io.Copy(io.Discard, res.Body)
					return err
				}
				return json.NewDecoder(res.Body).Decode(v)
			}
			run(b, conc, func() error {
				var r struct{ ID string }
				if err := post("/v1/reservations", body, http.StatusCreated, &r); err != nil {
					return err
				}
				return post("/v1/reservations/"+r.ID+"/settle", nil, http.StatusOK, nil)
			})
		})
	}
}

// run calls fn b.N times from conc goroutines and reports round trips per
// second.
func run(b *testing.B, conc int, fn func() error) {
	b.ResetTimer()
	if conc == 1 {
		for range b.N {
			if err := fn(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		// RunParallel starts SetParallelism × GOMAXPROCS goroutines.
		b.SetParallelism(max(1, conc/runtime.GOMAXPROCS(0)))
		var failed atomic.Value
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := fn(); err != nil {
					failed.Store(err)
					return
				}
			}
		})
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "roundtrips/s")
}

// benchSetup is a store with one agent, a budget it never exhausts, a
// price and a key.
func benchSetup(b *testing.B) (ledger.Store, *interpose.Engine, string, string) {
	b.Helper()
	ctx := context.Background()
	s := storetest.OpenSQLite(b)
	a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "bench", Owner: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: money.MustParse("1000000000"), Window: policy.WindowTotal}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "http:bench/*", PerCall: money.MustParse("0.001")}); err != nil {
		b.Fatal(err)
	}
	key, hash, prefix, err := apikey.Generate()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.CreateKey(ctx, a.ID, hash, prefix, nil); err != nil {
		b.Fatal(err)
	}
	eng := interpose.New(interpose.Options{Store: s, Logger: slog.New(slog.DiscardHandler)})
	return s, eng, a.ID, key
}

func benchServer(b *testing.B, st ledger.Store, eng *interpose.Engine) *httptest.Server {
	b.Helper()
	s, err := New(Options{Store: st, Engine: eng})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(s)
	b.Cleanup(srv.Close)
	return srv
}
