package apikey

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
)

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		key, hash, prefix, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, Scheme) || len(key) != 47 {
			t.Fatalf("key %q: want crk_ and 47 characters", key)
		}
		if !LooksValid(key) {
			t.Fatalf("LooksValid(%q) = false", key)
		}
		want := sha256.Sum256([]byte(key))
		if !bytes.Equal(hash, want[:]) || !bytes.Equal(Hash(key), hash) {
			t.Fatalf("hash of %q is not its SHA-256", key)
		}
		if prefix != key[:PrefixLen] {
			t.Fatalf("prefix %q, want %q", prefix, key[:PrefixLen])
		}
		if seen[key] {
			t.Fatalf("key %q generated twice", key)
		}
		seen[key] = true
	}
}

func TestLooksValid(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"", false},
		{"crk_", false},
		{"sk-" + strings.Repeat("a", 43), false},
		{"crk_" + strings.Repeat("a", 42), false},
		{"crk_" + strings.Repeat("a", 43), true},
		{"crk_" + strings.Repeat("+", 43), false},
	} {
		if got := LooksValid(tc.key); got != tc.want {
			t.Errorf("LooksValid(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
}

func TestAdminScheme(t *testing.T) {
	tok, hash, prefix, err := GenerateWith(AdminScheme)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "cra_") || len(tok) != 47 || prefix != tok[:PrefixLen] || !bytes.Equal(hash, Hash(tok)) {
		t.Fatalf("admin token %q prefix %q", tok, prefix)
	}
	if !LooksValidWith(AdminScheme, tok) {
		t.Errorf("LooksValidWith(AdminScheme, %q) = false", tok)
	}
	// One kind of secret is never taken for the other.
	if LooksValid(tok) {
		t.Errorf("LooksValid(%q) = true for an admin token", tok)
	}
	key, _, _, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if LooksValidWith(AdminScheme, key) {
		t.Errorf("LooksValidWith(AdminScheme, %q) = true for an agent key", key)
	}
}
