package dashboard

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/caracal-dev/caracal/merkle"
)

// jsCase is one proof for the page's verifier and the verdict it must give.
type jsCase struct {
	Name    string                 `json:"name"`
	Proof   *merkle.InclusionProof `json:"proof"`
	Key     string                 `json:"key"`
	EventID string                 `json:"event_id"`
	want    bool
}

// TestPageVerifierAgainstGo checks the dashboard's in-browser verifier
// (assets/merkle.js, run under Node's WebCrypto) on proofs built and signed
// by package merkle: every real proof of trees of 1 to 9 leaves verifies,
// and every kind of tampering fails.
func TestPageVerifierAgainstGo(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed; the e2e tests need it too")
	}
	skey, vkey, err := merkle.GenerateKey("caracal/test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := merkle.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := merkle.GenerateKey("caracal/test")
	if err != nil {
		t.Fatal(err)
	}

	var hashes []tlog.Hash
	var leaves [][]byte
	read := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	var cases []jsCase
	for n := int64(0); n < 9; n++ {
		l := merkle.Leaf{ID: fmt.Sprintf("ev-%d", n), TimeNS: 1764147600000000000 + n, AgentID: "a1", AgentName: "bot",
			Chain: []string{"a1"}, Resource: "llm:openai/gpt-4o", Operation: "chat.completions", AmountNanos: 12500000 * (n + 1),
			Currency: "USD", RequestID: fmt.Sprintf("r%d", n), Outcome: "charged"}
		data := merkle.AppendLeaf(nil, &l)
		hs, err := tlog.StoredHashes(n, data, read)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
		leaves = append(leaves, data)
		size := n + 1
		root, err := tlog.TreeHash(size, read)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := signer.Sign(size, root)
		if err != nil {
			t.Fatal(err)
		}
		for i := range size {
			p, err := merkle.ProveInclusion(i, size, leaves[i], string(cp), read)
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, jsCase{Name: fmt.Sprintf("leaf %d of %d", i, size), Proof: p, Key: vkey, EventID: fmt.Sprintf("ev-%d", i), want: true})
		}
	}

	// Tampered copies of the proof of leaf 2 in the tree of 9 (a path of
	// four hashes).
	base := cases[len(cases)-7]
	tamper := func(name string, f func(p *merkle.InclusionProof, c *jsCase)) {
		c := base
		p := *base.Proof
		p.Proof = append([]string(nil), base.Proof.Proof...)
		c.Proof, c.Name, c.want = &p, name, false
		f(&p, &c)
		cases = append(cases, c)
	}
	flip := func(h string) string {
		b := []byte(h)
		b[len(b)-1] = "10"[map[bool]int{true: 1, false: 0}[b[len(b)-1] == '1']]
		return string(b)
	}
	for i := range base.Proof.Proof {
		tamper(fmt.Sprintf("path hash %d changed", i), func(p *merkle.InclusionProof, _ *jsCase) { p.Proof[i] = flip(p.Proof[i]) })
	}
	tamper("leaf hash changed", func(p *merkle.InclusionProof, _ *jsCase) { p.LeafHash = flip(p.LeafHash) })
	tamper("leaf byte changed", func(p *merkle.InclusionProof, _ *jsCase) { p.Leaf = flip(p.Leaf) })
	tamper("wrong index", func(p *merkle.InclusionProof, _ *jsCase) { p.LeafIndex = 3 })
	tamper("path hash dropped", func(p *merkle.InclusionProof, _ *jsCase) { p.Proof = p.Proof[1:] })
	tamper("path hash added", func(p *merkle.InclusionProof, _ *jsCase) { p.Proof = append(p.Proof, p.Proof[0]) })
	tamper("tree size changed", func(p *merkle.InclusionProof, _ *jsCase) { p.TreeSize = 8 })
	tamper("other event asked for", func(_ *merkle.InclusionProof, c *jsCase) { c.EventID = "ev-3" })
	tamper("another key", func(_ *merkle.InclusionProof, c *jsCase) { c.Key = otherKey })
	tamper("checkpoint size rewritten", func(p *merkle.InclusionProof, _ *jsCase) {
		p.Checkpoint = strings.Replace(p.Checkpoint, "\n9\n", "\n10\n", 1)
	})
	tamper("signature byte changed", func(p *merkle.InclusionProof, _ *jsCase) {
		i := strings.LastIndex(p.Checkpoint, " ") + 10
		b := []byte(p.Checkpoint)
		b[i] = map[bool]byte{true: 'B', false: 'A'}[b[i] == 'A']
		p.Checkpoint = string(b)
	})

	in := filepath.Join(t.TempDir(), "cases.json")
	b, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "testdata/verify.mjs", in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	i := 0
	for sc.Scan() {
		var r struct {
			Name   string   `json:"name"`
			OK     bool     `json:"ok"`
			Failed []string `json:"failed"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("node printed %q: %v", sc.Text(), err)
		}
		if i >= len(cases) || r.Name != cases[i].Name {
			t.Fatalf("result %d is %q", i, r.Name)
		}
		if r.OK != cases[i].want {
			t.Errorf("%s: verified %v, want %v (failed steps %q)", r.Name, r.OK, cases[i].want, r.Failed)
		}
		if !r.OK && len(r.Failed) == 0 {
			t.Errorf("%s: failed without naming a failed step", r.Name)
		}
		i++
	}
	if i != len(cases) {
		t.Fatalf("node gave %d verdicts for %d cases", i, len(cases))
	}
}
