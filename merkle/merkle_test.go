package merkle

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	tdproof "github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"
)

func hx(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The standard RFC 6962 test vectors used by certificate-transparency and
// transparency-dev: eight leaf inputs and the roots of the trees of 0 to 8 of them.
var (
	kaLeaves = []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	kaRoots  = []string{
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
)

// kaTree stores the known-answer leaves with tlog and returns its hash reader.
func kaTree(t *testing.T) tlog.HashReader {
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for n, l := range kaLeaves {
		hs, err := tlog.StoredHashes(int64(n), hx(t, l), r)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
	}
	return r
}

func TestKnownAnswerRoots(t *testing.T) {
	r := kaTree(t)
	for n, want := range kaRoots {
		got, err := tlog.TreeHash(int64(n), r)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got[:]) != want {
			t.Errorf("root of %d leaves = %x, want %s", n, got[:], want)
		}
	}
	if EmptyRoot != tlog.Hash(hx(t, kaRoots[0])) {
		t.Errorf("EmptyRoot = %x", EmptyRoot)
	}
	// Leaf and node hashing must be RFC 6962's, not just consistent with itself.
	if got, want := tlog.RecordHash(nil), rfc6962.DefaultHasher.HashLeaf(nil); !bytes.Equal(got[:], want) {
		t.Errorf("RecordHash(empty) = %x, RFC 6962 says %x", got[:], want)
	}
}

func TestKnownAnswerInclusionProofs(t *testing.T) {
	r := kaTree(t)
	tests := []struct {
		leaf, size int64 // leaf is 1-based, as in the published vectors
		proof      []string
	}{
		{1, 1, nil},
		{1, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{6, 8, []string{"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{3, 3, []string{"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
		{2, 5, []string{"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d_of_%d", tt.leaf, tt.size), func(t *testing.T) {
			p, err := tlog.ProveRecord(tt.size, tt.leaf-1, r)
			if err != nil {
				t.Fatal(err)
			}
			if got := hexHashes(p); fmt.Sprint(got) != fmt.Sprint(append([]string{}, tt.proof...)) {
				t.Errorf("proof = %v, want %v", got, tt.proof)
			}
			root := tlog.Hash(hx(t, kaRoots[tt.size]))
			if err := tlog.CheckRecord(p, tt.size, root, tt.leaf-1, tlog.RecordHash(hx(t, kaLeaves[tt.leaf-1]))); err != nil {
				t.Errorf("CheckRecord: %v", err)
			}
		})
	}
}

func TestKnownAnswerConsistencyProofs(t *testing.T) {
	r := kaTree(t)
	tests := []struct {
		size1, size2 int64
		proof        []string
	}{
		{1, 1, nil},
		{1, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{6, 8, []string{"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 5, []string{"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
		{6, 7, []string{"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d_to_%d", tt.size1, tt.size2), func(t *testing.T) {
			p, err := ProveConsistency(tt.size1, tt.size2, "", "", r)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(p.Proof) != fmt.Sprint(append([]string{}, tt.proof...)) {
				t.Errorf("proof = %v, want %v", p.Proof, tt.proof)
			}
			hs, _ := parseHashes(p.Proof)
			if err := CheckConsistency(hs, tt.size1, tlog.Hash(hx(t, kaRoots[tt.size1])), tt.size2, tlog.Hash(hx(t, kaRoots[tt.size2]))); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestProofsAgainstTransparencyDev checks every inclusion and consistency
// proof of trees up to 40 leaves with an independent RFC 6962 verifier.
func TestProofsAgainstTransparencyDev(t *testing.T) {
	s := newTestSigner(t, "example.com/log")
	ring, _ := NewKeyRing(s.VerifierKey())
	var m memLog
	notes := map[int64]string{0: ""}
	roots := map[int64]tlog.Hash{0: EmptyRoot}
	const max = 40
	for i := range max {
		m.append(t, testLeaf(i))
		cp := m.checkpoint(t, s)
		notes[cp.Size], roots[cp.Size] = cp.Note, tlog.Hash(cp.Root)
	}
	r := HashReader(context.Background(), &m)
	h := rfc6962.DefaultHasher
	for size := int64(1); size <= max; size++ {
		root := roots[size]
		for i := range size {
			leaf := m.leaves[i].Leaf.Encode()
			p, err := ProveInclusion(i, size, leaf, notes[size], r)
			if err != nil {
				t.Fatal(err)
			}
			proof, _ := parseHashes(p.Proof)
			raw := make([][]byte, len(proof))
			for k := range proof {
				raw[k] = proof[k][:]
			}
			if err := tdproof.VerifyInclusion(h, uint64(i), uint64(size), h.HashLeaf(leaf), raw, root[:]); err != nil {
				t.Fatalf("leaf %d in %d: transparency-dev rejects our proof: %v", i, size, err)
			}
			if _, l, err := p.Verify(ring); err != nil || l.ID != m.leaves[i].EventID {
				t.Fatalf("leaf %d in %d: Verify = %v (leaf %q)", i, size, err, l.ID)
			}
		}
		for old := int64(0); old <= size; old++ {
			p, err := ProveConsistency(old, size, notes[old], notes[size], r)
			if err != nil {
				t.Fatal(err)
			}
			proof, _ := parseHashes(p.Proof)
			raw := make([][]byte, len(proof))
			for k := range proof {
				raw[k] = proof[k][:]
			}
			oldRoot := roots[old]
			if err := tdproof.VerifyConsistency(h, uint64(old), uint64(size), raw, oldRoot[:], root[:]); err != nil {
				t.Fatalf("%d → %d: transparency-dev rejects our proof: %v", old, size, err)
			}
			if old > 0 {
				if _, _, err := p.Verify(ring); err != nil {
					t.Fatalf("%d → %d: Verify: %v", old, size, err)
				}
			}
		}
	}
}

// exampleLeaf is the worked example of docs/ledger-format.md.
var exampleLeaf = Leaf{
	ID:               "0b5f7c1e-8d4a-4f2b-9e61-3a7d2c9b1f00",
	TimeNS:           1764147600000000000, // 2025-11-26T09:00:00Z
	AgentID:          "a1",
	AgentName:        "researcher",
	Chain:            []string{"a1", "a0"},
	Resource:         "llm:openai/gpt-4o",
	Operation:        "chat.completions",
	AmountNanos:      12_500_000, // 0.0125
	Currency:         "USD",
	RequestID:        "r1",
	Outcome:          "charged",
	InputTokens:      1000,
	OutputTokens:     1000,
	CachedTokens:     0,
	CacheWriteTokens: 0,
	ReasoningTokens:  0,
	Upstream:         "openai",
}

const (
	exampleLeafHex = "01" +
		"00000024" + "30623566376331652d386434612d346632622d396536312d336137643263396231663030" +
		"187b82e5355ba000" +
		"00000002" + "6131" +
		"0000000a" + "72657365617263686572" +
		"00000002" + "00000002" + "6131" + "00000002" + "6130" +
		"00000011" + "6c6c6d3a6f70656e61692f6770742d346f" +
		"00000010" + "636861742e636f6d706c6574696f6e73" +
		"00000000" +
		"00000000" +
		"0000000000bebc20" +
		"00000003" + "555344" +
		"00000002" + "7231" +
		"00000007" + "63686172676564" +
		"00000000" +
		"00000000" +
		"00000000000003e8" + "00000000000003e8" + "0000000000000000" + "0000000000000000" + "0000000000000000" +
		"00000006" + "6f70656e6169" +
		"00"
	exampleLeafHash = "c83361ce841b5488c5b51f081daecd38ce406bcd5d4c52c0bebf7f2717999194"
)

func TestLeafEncodingWorkedExample(t *testing.T) {
	got := exampleLeaf.Encode()
	if hex.EncodeToString(got) != exampleLeafHex {
		t.Fatalf("encoding =\n%x\nwant\n%s", got, exampleLeafHex)
	}
	h := exampleLeaf.Hash()
	if hex.EncodeToString(h[:]) != exampleLeafHash {
		t.Errorf("leaf hash = %x, want %s", h[:], exampleLeafHash)
	}
	// The leaf hash is the RFC 6962 one a third party computes.
	if want := rfc6962.DefaultHasher.HashLeaf(got); !bytes.Equal(h[:], want) {
		t.Errorf("leaf hash %x, RFC 6962 hasher says %x", h, want)
	}
}

func TestLeafEncodingCoversEveryField(t *testing.T) {
	base := exampleLeaf
	base.Chain = append([]string(nil), exampleLeaf.Chain...)
	edits := map[string]func(*Leaf){
		"ID": func(l *Leaf) { l.ID += "x" }, "TimeNS": func(l *Leaf) { l.TimeNS++ },
		"AgentID": func(l *Leaf) { l.AgentID = "a2" }, "AgentName": func(l *Leaf) { l.AgentName = "r" },
		"Chain":       func(l *Leaf) { l.Chain = []string{"a1"} },
		"ChainOrder":  func(l *Leaf) { l.Chain = []string{"a0", "a1"} },
		"Resource":    func(l *Leaf) { l.Resource = "x" },
		"Operation":   func(l *Leaf) { l.Operation = "x" },
		"Quantity":    func(l *Leaf) { l.Quantity = "1" },
		"Unit":        func(l *Leaf) { l.Unit = "page" },
		"AmountNanos": func(l *Leaf) { l.AmountNanos = -l.AmountNanos },
		"Currency":    func(l *Leaf) { l.Currency = "EUR" }, "RequestID": func(l *Leaf) { l.RequestID = "r2" },
		"Outcome": func(l *Leaf) { l.Outcome = "denied" }, "Code": func(l *Leaf) { l.Code = "budget_exceeded" },
		"Reason": func(l *Leaf) { l.Reason = "x" }, "InputTokens": func(l *Leaf) { l.InputTokens++ },
		"OutputTokens": func(l *Leaf) { l.OutputTokens++ }, "CachedTokens": func(l *Leaf) { l.CachedTokens++ },
		"CacheWriteTokens": func(l *Leaf) { l.CacheWriteTokens++ }, "ReasoningTokens": func(l *Leaf) { l.ReasoningTokens++ },
		"Upstream": func(l *Leaf) { l.Upstream = "" }, "Unpriced": func(l *Leaf) { l.Unpriced = true },
		// Moving bytes between adjacent fields must change the encoding.
		"Boundary": func(l *Leaf) { l.Quantity, l.Unit = "ab", "" },
	}
	seen := map[string]string{hex.EncodeToString(base.Encode()): "base"}
	for name, edit := range edits {
		l := base
		l.Chain = append([]string(nil), base.Chain...)
		edit(&l)
		enc := l.Encode()
		if prev, dup := seen[hex.EncodeToString(enc)]; dup {
			t.Errorf("editing %s gives the same encoding as %s", name, prev)
		}
		seen[hex.EncodeToString(enc)] = name
		back, err := DecodeLeaf(enc)
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !bytes.Equal(back.Encode(), enc) {
			t.Errorf("%s: round trip changed the leaf", name)
		}
	}
}

func TestDecodeLeafRefusesNonCanonical(t *testing.T) {
	good := exampleLeaf.Encode()
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"version", append([]byte{2}, good[1:]...), "version 2"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"trailing", append(append([]byte{}, good...), 0), "1 trailing bytes"},
		{"unpriced 2", append(append([]byte{}, good[:len(good)-1]...), 2), "neither 0 nor 1"},
		{"huge string", []byte{1, 0xff, 0xff, 0xff, 0xff}, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeLeaf(tt.b)
			if !errors.Is(err, ErrBadLeaf) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeLeaf = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzDecodeLeaf(f *testing.F) {
	f.Add(exampleLeaf.Encode())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := DecodeLeaf(b)
		if err != nil {
			return
		}
		if !bytes.Equal(l.Encode(), b) {
			t.Fatalf("decoded leaf re-encodes differently")
		}
	})
}

func TestCheckpointFormat(t *testing.T) {
	c := Checkpoint{Origin: "example.com/log", Size: 8, Root: tlog.Hash(hx(t, kaRoots[8]))}
	want := "example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
	if got := string(c.Format()); got != want {
		t.Fatalf("Format = %q, want %q", got, want)
	}
	back, err := ParseCheckpoint([]byte(want + "extension line\n"))
	if err != nil || back != c {
		t.Fatalf("ParseCheckpoint = %+v, %v", back, err)
	}
	for _, bad := range []string{"", "o\n8\n", "o\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "o\n-1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "o\n8\nAAAA\n", "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"} {
		if _, err := ParseCheckpoint([]byte(bad)); err == nil {
			t.Errorf("ParseCheckpoint(%q) accepted", bad)
		}
	}
}

func TestSignerAndKeyRotation(t *testing.T) {
	old := newTestSigner(t, "example.com/log")
	cur := newTestSigner(t, "example.com/log")
	if old.KeyID() == cur.KeyID() {
		t.Fatal("two generated keys share an ID")
	}
	if !strings.HasPrefix(old.VerifierKey(), old.KeyID()+"+") {
		t.Errorf("verifier key %q does not start with the key ID %q", old.VerifierKey(), old.KeyID())
	}
	root := tlog.Hash(hx(t, kaRoots[3]))
	n1, _ := old.Sign(3, root)
	n2, _ := cur.Sign(3, root)
	ring, err := NewKeyRing(old.VerifierKey(), cur.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		note  []byte
		keyID string
	}{{n1, old.KeyID()}, {n2, cur.KeyID()}} {
		c, err := OpenCheckpoint(tt.note, ring, tt.keyID)
		if err != nil || c.Size != 3 || c.Root != root || c.Origin != "example.com/log" {
			t.Errorf("OpenCheckpoint(%s) = %+v, %v", tt.keyID, c, err)
		}
	}
	if _, err := OpenCheckpoint(n1, ring, cur.KeyID()); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "signature does not verify with key "+cur.KeyID()) {
		t.Errorf("old note checked with the new key: %v", err)
	}
	bad := bytes.Replace(n1, []byte("\u2014 example.com/log "), []byte("\u2014 example.com/log "), 1)
	bad[len(bad)-10] ^= 1
	if _, err := OpenCheckpoint(bad, ring, old.KeyID()); !errors.Is(err, ErrSignature) {
		t.Errorf("altered signature accepted: %v", err)
	}
}

// tamperCase damages a built ledger and says what Verify must name.
type tamperCase struct {
	name    string
	tamper  func(m *memLog, s *Signer)
	seq     int64
	cpSize  int64
	message string
}

func TestVerifyDetectsTampering(t *testing.T) {
	s := newTestSigner(t, "example.com/log")
	other := newTestSigner(t, "example.com/log")
	build := func() *memLog {
		m := &memLog{}
		m.checkpoint(t, s)
		for i := range 50 {
			m.append(t, testLeaf(i))
			if i%7 == 6 {
				m.checkpoint(t, s)
			}
		}
		m.checkpoint(t, s)
		return m
	}
	ring, _ := NewKeyRing(s.VerifierKey(), other.VerifierKey())

	m := build()
	rep, err := Verify(context.Background(), m, VerifyOptions{Keys: ring})
	if err != nil {
		t.Fatalf("intact ledger: %v", err)
	}
	if rep.Size != 50 || rep.Checkpoints != int64(len(m.cps)) || rep.Latest != 50 {
		t.Fatalf("report = %+v", rep)
	}

	cps := func(m *memLog, size int64) *CheckpointRecord {
		for i := range m.cps {
			if m.cps[i].Size == size {
				return &m.cps[i]
			}
		}
		t.Fatalf("no checkpoint %d", size)
		return nil
	}
	tests := []tamperCase{
		{"amount edited", func(m *memLog, _ *Signer) { m.leaves[41].Leaf.AmountNanos++ }, 41, -1, "leaf hash mismatch: the row was changed"},
		{"unreadable row", func(m *memLog, _ *Signer) { m.leaves[3].Err = errors.New("unpriced is 2") }, 3, -1, "unpriced is 2: the row was changed"},
		{"event deleted", func(m *memLog, _ *Signer) { m.leaves[20].Missing = true }, 20, -1, "event row missing: the event was deleted"},
		{"leaf row deleted", func(m *memLog, _ *Signer) { m.leaves = append(m.leaves[:20], m.leaves[21:]...) }, 20, -1, "leaf row missing"},
		{"events swapped", func(m *memLog, _ *Signer) {
			m.leaves[10].Leaf, m.leaves[11].Leaf = m.leaves[11].Leaf, m.leaves[10].Leaf
		}, 10, -1, "leaf hash mismatch"},
		{"tail truncated", func(m *memLog, _ *Signer) {
			m.leaves = m.leaves[:45]
			m.hashes = m.hashes[:tlog.StoredHashCount(45)]
		}, -1, 49, "ledger has 45 events but checkpoint size 49 covers more: events were deleted or truncated"},
		{"truncated to one event", func(m *memLog, _ *Signer) {
			m.leaves = m.leaves[:1]
			m.hashes = m.hashes[:tlog.StoredHashCount(1)]
		}, -1, 7, "ledger has 1 event but checkpoint size 7 covers more: events were deleted or truncated"},
		{"stored hash changed", func(m *memLog, _ *Signer) { m.hashes[tlog.StoredHashIndex(1, 6)][0] ^= 1 }, 13, -1, "merkle_hashes was changed"},
		{"stored leaf hash changed", func(m *memLog, _ *Signer) { m.hashes[tlog.StoredHashIndex(0, 5)][0] ^= 1 }, 5, -1, "merkle_hashes was changed"},
		{"leaf_hash column changed", func(m *memLog, _ *Signer) { m.leaves[5].LeafHash = make([]byte, 32) }, 5, -1, "the leaf row was changed"},
		{"checkpoint signature altered", func(m *memLog, _ *Signer) {
			cp := cps(m, 21)
			b := []byte(cp.Note)
			b[len(b)-4] ^= 1
			cp.Note = string(b)
		}, -1, 21, "signature does not verify"},
		{"checkpoint root column altered", func(m *memLog, _ *Signer) { cps(m, 14).Root[0] ^= 1 }, -1, 14, "the checkpoint row was changed"},
		{"checkpoint key swapped", func(m *memLog, _ *Signer) { cps(m, 14).KeyID = other.KeyID() }, -1, 14, "signature does not verify with key " + other.KeyID()},
		{"checkpoint from a fork", func(m *memLog, s *Signer) {
			fork := &memLog{}
			for i := range 28 {
				l := testLeaf(i)
				if i == 27 {
					l.AmountNanos = 1
				}
				fork.append(t, l)
			}
			*cps(m, 28) = fork.checkpoint(t, s)
		}, -1, 28, "forked history"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := build()
			tt.tamper(m, s)
			_, err := Verify(context.Background(), m, VerifyOptions{Keys: ring})
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, want a VerifyError", err)
			}
			if ve.Seq != tt.seq || ve.CheckpointSize != tt.cpSize || !strings.Contains(ve.Error(), tt.message) {
				t.Fatalf("Verify = %q (seq %d, checkpoint %d), want seq %d, checkpoint %d, %q", ve, ve.Seq, ve.CheckpointSize, tt.seq, tt.cpSize, tt.message)
			}
		})
	}
}

func TestVerifyAfterKeyRotation(t *testing.T) {
	k1 := newTestSigner(t, "example.com/log")
	k2 := newTestSigner(t, "example.com/log")
	m := &memLog{}
	for i := range 30 {
		m.append(t, testLeaf(i))
		if i < 15 {
			m.checkpoint(t, k1)
		} else {
			m.checkpoint(t, k2)
		}
	}
	ring, _ := NewKeyRing(k1.VerifierKey(), k2.VerifierKey())
	if _, err := Verify(context.Background(), m, VerifyOptions{Keys: ring}); err != nil {
		t.Fatalf("both keys known: %v", err)
	}
	only2, _ := NewKeyRing(k2.VerifierKey())
	_, err := Verify(context.Background(), m, VerifyOptions{Keys: only2})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.CheckpointSize != 1 || !strings.Contains(err.Error(), "unknown key "+k1.KeyID()) {
		t.Fatalf("old key missing: %v", err)
	}
	if err := VerifyCheckpoint(context.Background(), &m.cps[29], &m.cps[3], m, ring); err != nil {
		t.Fatalf("VerifyCheckpoint: %v", err)
	}
}

func TestProofDocuments(t *testing.T) {
	s := newTestSigner(t, "example.com/log")
	ring, _ := NewKeyRing(s.VerifierKey())
	m := &memLog{}
	for i := range 10 {
		m.append(t, testLeaf(i))
	}
	c6 := m.checkpoint(t, s) // size 10
	for i := 10; i < 17; i++ {
		m.append(t, testLeaf(i))
	}
	c17 := m.checkpoint(t, s)
	r := HashReader(context.Background(), m)
	ip, err := ProveInclusion(4, 17, m.leaves[4].Leaf.Encode(), c17.Note, r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ip)
	doc, err := ParseProof(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, l, err := doc.(*InclusionProof).Verify(ring); err != nil || l.ID != "ev-0004" {
		t.Fatalf("inclusion Verify = %v", err)
	}
	cp, err := ProveConsistency(10, 17, c6.Note, c17.Note, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.Verify(ring); err != nil {
		t.Fatalf("consistency Verify = %v", err)
	}

	bad := []struct {
		name string
		edit func(p *InclusionProof)
		want string
	}{
		{"leaf changed", func(p *InclusionProof) { p.Leaf = p.Leaf[:len(p.Leaf)-2] + "01" }, "do not hash to leaf_hash"},
		{"proof hash changed", func(p *InclusionProof) { p.Proof[0] = strings.Repeat("00", 32) }, "does not verify"},
		{"index moved", func(p *InclusionProof) { p.LeafIndex = 5 }, "does not verify"},
		{"size moved", func(p *InclusionProof) { p.TreeSize = 16 }, "tree_size 16"},
		{"checkpoint forged", func(p *InclusionProof) { p.Checkpoint = strings.Replace(p.Checkpoint, "\n17\n", "\n18\n", 1) }, "signature does not verify"},
		{"bad hex", func(p *InclusionProof) { p.LeafHash = "zz" }, "leaf_hash"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p := *ip
			p.Proof = append([]string(nil), ip.Proof...)
			tt.edit(&p)
			if _, _, err := p.Verify(ring); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify = %v, want %q", err, tt.want)
			}
		})
	}
	other := newTestSigner(t, "example.com/log")
	otherRing, _ := NewKeyRing(other.VerifierKey())
	if _, _, err := ip.Verify(otherRing); err == nil {
		t.Error("proof accepted with the wrong public key")
	}
	cp.Proof[0] = strings.Repeat("11", 32)
	if _, _, err := cp.Verify(ring); err == nil || !strings.Contains(err.Error(), "not a prefix") {
		t.Errorf("tampered consistency proof: %v", err)
	}
	if _, err := ParseProof([]byte(`{"format":"x"}`)); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestVerifyLargeRandomLedger(t *testing.T) {
	// Trees of awkward sizes with checkpoints at random points, checked
	// against tlog's own root computation.
	s := newTestSigner(t, "example.com/log")
	ring, _ := NewKeyRing(s.VerifierKey())
	rnd := rand.New(rand.NewPCG(1, 2))
	m := &memLog{}
	for i := range 1500 {
		m.append(t, testLeaf(i))
		if rnd.IntN(40) == 0 {
			m.checkpoint(t, s)
		}
	}
	m.checkpoint(t, s)
	rep, err := Verify(context.Background(), m, VerifyOptions{Keys: ring, ProgressEvery: 100, Progress: func(int64) {}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tlog.TreeHash(1500, tlog.HashReaderFunc(m.readHashes))
	if rep.Root != want {
		t.Fatalf("rebuilt root %x, tlog says %x", rep.Root, want)
	}
}
