package merkle

import (
	"encoding/hex"
	"strings"
	"testing"
)

// TestLeafEncodingOverrunExample is the overrun variant of the worked
// example in docs/ledger-format.md: only field 14 (code) differs, and the
// leaf decodes back to the same event.
func TestLeafEncodingOverrunExample(t *testing.T) {
	l := exampleLeaf
	l.Code = "usage_overrun"
	// Field 14 is the second empty str after the outcome "charged".
	charged := "00000007" + "63686172676564"
	i := strings.Index(exampleLeafHex, charged) + len(charged)
	want := exampleLeafHex[:i] + "0000000d" + "75736167655f6f76657272756e" + exampleLeafHex[i+len("00000000"):]
	got := l.Encode()
	if hex.EncodeToString(got) != want {
		t.Fatalf("encoding =\n%x\nwant\n%s", got, want)
	}
	if len(got) != 238 {
		t.Errorf("length %d, want 238", len(got))
	}
	h := l.Hash()
	if hex.EncodeToString(h[:]) != exampleOverrunLeafHash {
		t.Errorf("leaf hash = %x, want %s", h[:], exampleOverrunLeafHash)
	}
	back, err := DecodeLeaf(got)
	if err != nil || back.Code != "usage_overrun" {
		t.Fatalf("DecodeLeaf = %+v, %v", back, err)
	}
}

const exampleOverrunLeafHash = "f9ba7b863a2a0cfd2b0712ddc848a6f45323f9567ffe156db22731ca5fbede48"
