package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/merkle"
)

// ledgerDB opens the environment's database for writing events directly,
// the way the enforcement code commits them, and for tampering.
func (e *cliEnv) ledgerDB() storetest.MerkleDB {
	e.t.Helper()
	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	f.Flags = GlobalFlags{Home: e.home, DatabaseURL: e.dbURL}
	e.t.Cleanup(f.Close)
	s, err := f.Store(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return storetest.OpenMerkleDB(e.t, s)
}

func TestMerkleCommands(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newCLIEnv(t, backend)
			e.ok("init")
			db := e.ledgerDB()
			db.InsertEvents(t, 0, 25)

			var st ledger.MerkleStatus
			e.json(&st, "merkle", "status")
			if st.TreeSize != 0 || st.Pending != 25 || st.Checkpoint != nil || st.OldestPending == nil {
				t.Fatalf("status before integration = %+v", st)
			}
			if out := e.ok("merkle", "integrate"); !strings.HasPrefix(out, "Integrated 25 events; checkpoint size 25 signed by caracal/") {
				t.Fatalf("integrate: %q", out)
			}
			db.InsertEvents(t, 25, 5)
			e.ok("merkle", "integrate")
			e.json(&st, "merkle", "status")
			if st.TreeSize != 30 || st.Pending != 0 || st.Checkpoint == nil || st.Checkpoint.Size != 30 || st.LagSeconds != 0 {
				t.Fatalf("status after integration = %+v", st)
			}
			if out := e.ok("merkle", "status"); !strings.Contains(out, "Tree size:") || !strings.Contains(out, "size 30, signed by") {
				t.Errorf("status table:\n%s", out)
			}

			note := e.ok("merkle", "checkpoint")
			if !strings.HasPrefix(note, "caracal/") || !strings.Contains(note, "\n30\n") || !strings.Contains(note, "\n\n\u2014 caracal/") {
				t.Errorf("checkpoint note:\n%s", note)
			}
			if old := e.ok("merkle", "checkpoint", "--size", "25"); !strings.Contains(old, "\n25\n") {
				t.Errorf("checkpoint --size 25:\n%s", old)
			}

			pub := strings.TrimSpace(e.ok("keys", "export-public"))
			dir := t.TempDir()
			pubFile := filepath.Join(dir, "caracal.pub")
			os.WriteFile(pubFile, []byte(pub+"\n"), 0o644)

			proof := e.ok("merkle", "prove", "--seq", "7")
			var ip merkle.InclusionProof
			if err := json.Unmarshal([]byte(proof), &ip); err != nil || ip.LeafIndex != 7 || ip.TreeSize != 30 || ip.EventID != "ev-0000007" {
				t.Fatalf("prove --seq 7: %+v, %v\n%s", ip, err, proof)
			}
			proofFile := filepath.Join(dir, "proof.json")
			os.WriteFile(proofFile, []byte(proof), 0o644)
			if out := e.ok("merkle", "verify-proof", proofFile, "--key", pubFile); !strings.HasPrefix(out, "OK: event ev-0000007 (seq 7, 0.08 USD, charged) is in the tree of size 30") {
				t.Errorf("verify-proof: %q", out)
			}
			if out, _, code := e.runIn(e.ok("merkle", "prove", "--event", "ev-0000011", "--size", "25"), "merkle", "verify-proof", "-", "--key", pub); code != 0 || !strings.Contains(out, "seq 11") || !strings.Contains(out, "size 25") {
				t.Errorf("prove --event | verify-proof -: exit %d, %q", code, out)
			}
			cons := e.ok("merkle", "consistency", "--from", "25")
			consFile := filepath.Join(dir, "consistency.json")
			os.WriteFile(consFile, []byte(cons), 0o644)
			if out := e.ok("merkle", "verify-proof", consFile, "--key", pub); !strings.Contains(out, "extends the tree of size 25 unchanged") {
				t.Errorf("verify-proof consistency: %q", out)
			}

			// A proof checked with another log's key, or altered, fails.
			_, otherPub, _ := merkle.GenerateKey("caracal/elsewhere")
			e.fails(1, "proof does not verify: checkpoint: signature does not verify with any given key", "merkle", "verify-proof", proofFile, "--key", otherPub)
			os.WriteFile(proofFile, []byte(strings.Replace(proof, `"leaf_index": 7`, `"leaf_index": 8`, 1)), 0o644)
			if _, errOut, code := e.run("merkle", "verify-proof", proofFile, "--key", pub); code != 1 || !strings.Contains(errOut, "proof does not verify") {
				t.Errorf("altered proof: exit %d, %q", code, errOut)
			}

			if out := e.ok("merkle", "verify"); !strings.HasPrefix(out, "OK: checkpoint size 30 verified") {
				t.Errorf("verify: %q", out)
			}
			if out := e.ok("merkle", "verify", "--full"); !strings.HasPrefix(out, "OK: 30 events, 2 checkpoints verified") {
				t.Errorf("verify --full: %q", out)
			}

			// Rotation: the old checkpoints still verify.
			var keys []keyInfo
			e.ok("keys", "rotate")
			e.json(&keys, "keys", "list")
			if len(keys) != 2 || keys[0].Active || !keys[1].Active || keys[1].PrivateKey == "" {
				t.Fatalf("keys after rotate = %+v", keys)
			}
			if got := strings.TrimSpace(e.ok("keys", "export-public", keys[0].Name)); got != pub {
				t.Errorf("export-public of the old key = %q, want %q", got, pub)
			}
			var exported keyInfo
			e.json(&exported, "keys", "export-public", keys[0].ID, "-o", "json")
			if exported.PublicKey != pub || exported.ID != keys[0].ID || exported.Name != keys[0].Name || exported.PrivateKey != "" {
				t.Errorf("export-public -o json = %+v, want the old key's public part only", exported)
			}
			e.fails(1, `signing key "nope" not found`, "keys", "export-public", "nope")
			db.InsertEvents(t, 30, 3)
			e.ok("merkle", "integrate")
			if out := e.ok("merkle", "verify", "--full"); !strings.HasPrefix(out, "OK: 33 events, 3 checkpoints verified") {
				t.Errorf("verify --full after rotation: %q", out)
			}
			e.fails(1, "verification failed: checkpoint size 33: signature does not verify: signed by unknown key "+keys[1].ID,
				"merkle", "verify", "--full", "--key", pubFile)

			// An amount edited behind Caracal's back is named.
			db.DisableAppendOnly(t)
			db.Exec(t, `UPDATE events SET amount_nanos = 1 WHERE id = 'ev-0000012'`)
			e.fails(1, "verification failed: event seq 12 (id ev-0000012): leaf hash mismatch: the row was changed", "merkle", "verify", "--full")
			var res verifyResult
			out, _, code := e.run("merkle", "verify", "--full", "-o", "json")
			if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.OK || res.Seq == nil || *res.Seq != 12 {
				t.Errorf("verify --full -o json after tampering: exit %d, %+v, %v", code, res, err)
			}
		})
	}
}

func TestMerkleUsageErrors(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.ok("init")
	e.fails(2, "give exactly one of --event or --seq", "merkle", "prove")
	e.fails(2, "give exactly one of --event or --seq", "merkle", "prove", "--seq", "1", "--event", "x")
	e.fails(2, "--seq -1: must be 0 or more", "merkle", "prove", "--seq", "-1")
	e.fails(2, "--from is required", "merkle", "consistency")
	e.fails(2, "--key is required: the public key the checkpoint must be signed with", "merkle", "verify-proof", "proof.json")
	e.fails(2, "caracal merkle verify-proof: missing argument FILE", "merkle", "verify-proof")
	e.fails(2, "--name: key name \"../x\": use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", "keys", "rotate", "--name", "../x")
	e.fails(1, "no checkpoint yet: nothing to verify (run caracal merkle integrate)", "merkle", "verify")
	e.fails(1, "--size 3: no checkpoint of that size (see caracal merkle status)", "merkle", "checkpoint", "--size", "3")
	e.fails(1, "--event: event nope: not found", "merkle", "prove", "--event", "nope")
	e.ok("merkle", "integrate")
	e.fails(1, "--seq 0: no event at that position in the tree of the checkpoint (see caracal merkle status)", "merkle", "prove", "--seq", "0")
	if _, errOut, code := e.run("keys", "generate"); code != 1 || !strings.HasPrefix(errOut, "caracal: signing key caracal/") || !strings.HasSuffix(errOut, " is already active: use `caracal keys rotate` to replace it\n") {
		t.Errorf("keys generate with an active key: exit %d, %q", code, errOut)
	}
}

func TestRunMerkleVerifyProofWithBuffers(t *testing.T) {
	skey, vkey, _ := merkle.GenerateKey("example.com/log")
	s, _ := merkle.NewSigner(skey)
	leaf := merkle.Leaf{ID: "ev-1", AmountNanos: 1_500_000_000, Currency: "USD", Outcome: "charged"}
	h := leaf.Hash()
	note, _ := s.Sign(1, h)
	p, err := merkle.ProveInclusion(0, 1, leaf.Encode(), string(note), nil)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(p)
	var out bytes.Buffer
	opts := &merkleVerifyProofOptions{IO: &IOStreams{In: bytes.NewReader(doc), Out: &out, ErrOut: &out}, File: "-", Keys: []string{vkey}}
	if err := runMerkleVerifyProof(opts); err != nil {
		t.Fatal(err)
	}
	if want := "OK: event ev-1 (seq 0, 1.5 USD, charged) is in the tree of size 1 of log \"example.com/log\""; !strings.HasPrefix(out.String(), want) {
		t.Errorf("output %q, want prefix %q", out.String(), want)
	}
	opts.Keys = []string{"not a key"}
	opts.IO.In = bytes.NewReader(doc)
	if err := runMerkleVerifyProof(opts); err == nil || !strings.Contains(err.Error(), "--key") {
		t.Errorf("bad key: %v", err)
	}
}

func TestFormatNanos(t *testing.T) {
	for n, want := range map[int64]string{0: "0.0", 1: "0.000000001", 80_000_000: "0.08", -1_500_000_000: "-1.5", 12_000_000_000: "12.0"} {
		if got := formatNanos(n); got != want {
			t.Errorf("formatNanos(%d) = %q, want %q", n, got, want)
		}
	}
}
