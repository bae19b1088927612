package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/merkle"
)

// rawStore is what the Merkle tests need beyond ledger.Store: the database
// handle, to write events the way the enforcement code does and to tamper
// with rows behind the store's back.
type rawStore interface {
	DB() *sql.DB
}

// MerkleDB gives a test direct SQL access to a store under test.
type MerkleDB struct {
	DB       *sql.DB
	Postgres bool
}

// OpenMerkleDB returns s's database handle; s must be a SQL store.
func OpenMerkleDB(t testing.TB, s ledger.Store) MerkleDB {
	t.Helper()
	r, ok := s.(rawStore)
	if !ok {
		t.Fatalf("store %T does not expose DB(); the Merkle tests need raw SQL access", s)
	}
	st, err := s.Status(context.Background())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return MerkleDB{DB: r.DB(), Postgres: st.Backend == "postgres"}
}

// Q rewrites `?` placeholders for the backend.
func (d MerkleDB) Q(query string) string {
	if !d.Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Exec runs one statement or fails the test.
func (d MerkleDB) Exec(t testing.TB, query string, args ...any) {
	t.Helper()
	if _, err := d.DB.Exec(d.Q(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// DisableAppendOnly removes the append-only protection, as a superuser or
// someone editing the database file could, so a test can tamper.
func (d MerkleDB) DisableAppendOnly(t testing.TB) {
	t.Helper()
	for _, tbl := range []string{"events", "leaves", "merkle_hashes", "checkpoints"} {
		if d.Postgres {
			d.Exec(t, `ALTER TABLE `+tbl+` DISABLE TRIGGER USER`)
			continue
		}
		d.Exec(t, `DROP TRIGGER `+tbl+`_no_update`)
		d.Exec(t, `DROP TRIGGER `+tbl+`_no_delete`)
	}
}

// InsertEvents commits n events (with their integration queue rows) in
// transactions of up to 1000, the way the enforcement code writes them,
// numbering them from first. Event i has ID "ev-<i>" and amount i+1 cents.
func (d MerkleDB) InsertEvents(t testing.TB, first, n int) {
	t.Helper()
	if err := d.insertEvents(context.Background(), first, n, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func (d MerkleDB) insertEvents(ctx context.Context, first, n int, at time.Time) error {
	for start := first; start < first+n; start += 1000 {
		end := min(start+1000, first+n)
		tx, err := d.DB.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for i := start; i < end; i++ {
			id := fmt.Sprintf("ev-%07d", i)
			var pk int64
			unpriced := any(i%5 == 0)
			err := tx.QueryRowContext(ctx, d.Q(`INSERT INTO events (id, time_ns, agent_id, agent_name, chain, resource, operation,
				quantity, unit, amount_nanos, currency, request_id, outcome, code, reason,
				input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, upstream, unpriced)
				VALUES (?, ?, 'agent-1', 'researcher', '["agent-1","agent-0"]', 'llm:openai/gpt-4o', 'chat.completions',
				'', '', ?, 'USD', ?, 'charged', '', '', ?, ?, 0, 0, 0, 'openai', ?) RETURNING pk`),
				id, at.UnixNano()+int64(i), int64(i+1)*10_000_000, "req-"+id, int64(i), int64(2*i), unpriced).Scan(&pk)
			if err != nil {
				tx.Rollback()
				return fmt.Errorf("insert event %d: %w", i, err)
			}
			if _, err := tx.ExecContext(ctx, d.Q(`INSERT INTO integration_queue (event_pk, event_id, queued_ns) VALUES (?, ?, ?)`), pk, id, time.Now().UnixNano()); err != nil {
				tx.Rollback()
				return fmt.Errorf("queue event %d: %w", i, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// EventIDAt returns the event ID of leaf seq.
func (d MerkleDB) EventIDAt(t testing.TB, seq int64) string {
	t.Helper()
	var id string
	if err := d.DB.QueryRow(d.Q(`SELECT event_id FROM leaves WHERE seq = ?`), seq).Scan(&id); err != nil {
		t.Fatalf("leaf %d: %v", seq, err)
	}
	return id
}

// NewSigner generates a signing key and registers it with the store.
func NewSigner(t testing.TB, s ledger.Merkle, origin string) *merkle.Signer {
	t.Helper()
	skey, _, err := merkle.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := merkle.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddSigningKey(context.Background(), ledger.SigningKey{ID: sg.KeyID(), Name: "test", PublicKey: sg.VerifierKey(), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return sg
}

func integrateAll(t testing.TB, s ledger.Merkle, sign ledger.Signer, batch int) []ledger.Checkpoint {
	t.Helper()
	var cps []ledger.Checkpoint
	for {
		cp, ok, err := s.Integrate(context.Background(), batch, sign)
		if err != nil {
			t.Fatalf("Integrate: %v", err)
		}
		if !ok {
			return cps
		}
		cps = append(cps, cp)
	}
}

func verifyFull(t testing.TB, s ledger.Store) (merkle.Report, error) {
	t.Helper()
	ring, err := ledger.KeyRing(context.Background(), s, false)
	if err != nil {
		t.Fatal(err)
	}
	return ledger.VerifyFull(context.Background(), s, ring, nil)
}
