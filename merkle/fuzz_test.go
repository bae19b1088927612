package merkle

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// FuzzLeafRoundTrip encodes leaves built from arbitrary fields and decodes
// them back: every field must survive, and the encoding is canonical.
func FuzzLeafRoundTrip(f *testing.F) {
	f.Add("ev-1", int64(1_764_140_400_000_000_000), "agent-1", "bot", "agent-1\x00agent-root", "mcp:fs/read_file", "1.5", int64(-7), "USD", "", int64(3), int64(-1), true)
	f.Add("", int64(-1), "", "", "", "", "", int64(0), "", "é\xff", int64(0), int64(1<<62), false)
	f.Fuzz(func(t *testing.T, id string, ts int64, agent, name, chain, resource, qty string, amount int64, currency, reason string, in, out int64, unpriced bool) {
		l := Leaf{
			ID: id, TimeNS: ts, AgentID: agent, AgentName: name, Resource: resource, Operation: qty + "op",
			Quantity: qty, Unit: currency, AmountNanos: amount, Currency: currency, RequestID: reason + id,
			Outcome: name, Code: agent, Reason: reason, InputTokens: in, OutputTokens: out, CachedTokens: in ^ out,
			CacheWriteTokens: -in, ReasoningTokens: amount, Upstream: resource, Unpriced: unpriced,
		}
		if chain != "" {
			l.Chain = strings.Split(chain, "\x00")
		}
		b := l.Encode()
		got, err := DecodeLeaf(b)
		if err != nil {
			t.Fatalf("DecodeLeaf(Encode(%+v)) = %v", l, err)
		}
		if len(got.Chain) == 0 {
			got.Chain = nil // an empty chain decodes as an empty slice
		}
		if !reflect.DeepEqual(got, l) {
			t.Fatalf("round trip changed the leaf:\n%+v\n%+v", l, got)
		}
		if !bytes.Equal(got.Encode(), b) || got.Hash() != l.Hash() {
			t.Fatal("re-encoding differs")
		}
		if _, err := DecodeLeaf(append(b, 0)); err == nil {
			t.Fatal("DecodeLeaf accepted a trailing byte")
		}
		if _, err := DecodeLeaf(b[:len(b)-1]); err == nil {
			t.Fatal("DecodeLeaf accepted a truncated leaf")
		}
	})
}

// FuzzParseCheckpoint parses arbitrary checkpoint bodies: what it accepts
// formats back to exactly the body's first three lines, and a checkpoint
// built from arbitrary fields parses back from its Format.
func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"), "example.com/log", int64(8), make([]byte, 32))
	f.Add([]byte("o\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\next\n"), "o", int64(0), []byte{1})
	f.Add([]byte("o\n+8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg\n"), "a b", int64(-1), make([]byte, 32))
	f.Fuzz(func(t *testing.T, body []byte, origin string, size int64, root []byte) {
		if c, err := ParseCheckpoint(body); err == nil {
			if c.Origin == "" || c.Size < 0 {
				t.Fatalf("ParseCheckpoint(%q) = %+v", body, c)
			}
			if !bytes.HasPrefix(body, c.Format()) {
				t.Fatalf("ParseCheckpoint(%q) = %+v, which formats as %q", body, c, c.Format())
			}
		} else if !strings.HasPrefix(err.Error(), "checkpoint: ") {
			t.Fatalf("ParseCheckpoint error %q", err)
		}
		if origin == "" || strings.Contains(origin, "\n") || size < 0 || len(root) != tlog.HashSize {
			return
		}
		c := Checkpoint{Origin: origin, Size: size, Root: tlog.Hash(root)}
		back, err := ParseCheckpoint(c.Format())
		if err != nil || back != c {
			t.Fatalf("ParseCheckpoint(%q) = %+v, %v; want %+v", c.Format(), back, err, c)
		}
	})
}

// fixedSigner is a signer with a fixed key, so that proofs made in the
// seed corpus verify run after run (Ed25519 signatures are deterministic).
func fixedSigner(t testing.TB) *Signer {
	skey, _, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)), "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzProofVerify parses and verifies arbitrary proof documents against a
// fixed key, with real proofs as seeds for the fuzzer to mutate: no panic,
// and a proof that verifies must be consistent with what it claims.
func FuzzProofVerify(f *testing.F) {
	s := fixedSigner(f)
	m := &memLog{}
	for i := range 5 {
		m.append(f, testLeaf(i))
	}
	c5 := m.checkpoint(f, s)
	for i := 5; i < 11; i++ {
		m.append(f, testLeaf(i))
	}
	c11 := m.checkpoint(f, s)
	r := HashReader(context.Background(), m)
	for _, i := range []int64{0, 4, 10} {
		ip, err := ProveInclusion(i, 11, m.leaves[i].Leaf.Encode(), c11.Note, r)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := json.Marshal(ip)
		f.Add(b)
	}
	cp, err := ProveConsistency(5, 11, c5.Note, c11.Note, r)
	if err != nil {
		f.Fatal(err)
	}
	b, _ := json.Marshal(cp)
	f.Add(b)
	f.Add([]byte(`{"format":"caracal-inclusion-proof/v1","leaf_index":-1,"tree_size":-5}`))
	f.Add([]byte(`{"format":"caracal-consistency-proof/v1","old_size":9,"new_size":2}`))
	ring, err := NewKeyRing(s.VerifierKey())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		v, err := ParseProof(doc)
		if err != nil {
			return
		}
		switch p := v.(type) {
		case *InclusionProof:
			cp, leaf, err := p.Verify(ring)
			if err != nil {
				return
			}
			if cp.Size != p.TreeSize || p.LeafIndex < 0 || p.LeafIndex >= p.TreeSize {
				t.Fatalf("verified inclusion proof %+v against checkpoint %+v", p, cp)
			}
			if p.Leaf != "" {
				raw, _ := hex.DecodeString(p.Leaf)
				if !bytes.Equal(leaf.Encode(), raw) {
					t.Fatalf("verified leaf %+v is not the proof's leaf bytes", leaf)
				}
			}
		case *ConsistencyProof:
			old, cur, err := p.Verify(ring)
			if err != nil {
				return
			}
			if old.Size != p.OldSize || cur.Size != p.NewSize || old.Size > cur.Size || old.Origin != cur.Origin {
				t.Fatalf("verified consistency proof %+v between %+v and %+v", p, old, cur)
			}
		default:
			t.Fatalf("ParseProof returned %T", v)
		}
	})
}
