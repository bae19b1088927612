// Package apikey makes and recognises agent API keys and admin tokens.
//
// A key is "crk_" (an admin token "cra_") followed by the unpadded base64url encoding of 32 bytes
// from crypto/rand (47 characters in all). Only its SHA-256 hash is stored;
// the first PrefixLen characters are kept in clear so an operator can tell
// keys apart in listings without being able to use them.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// Scheme is the prefix every agent key starts with.
const Scheme = "crk_"

// AdminScheme is the prefix every admin token of `caracal serve` starts
// with; apart from it an admin token is made like an agent key.
const AdminScheme = "cra_"

// PrefixLen is how many leading characters of a key are stored in clear.
const PrefixLen = 12

// secretBytes is the key's entropy.
const secretBytes = 32

// Generate returns a new agent key, its SHA-256 hash and its clear prefix.
func Generate() (key string, hash []byte, prefix string, err error) {
	return GenerateWith(Scheme)
}

// GenerateWith returns a new secret starting with scheme (Scheme or
// AdminScheme), its SHA-256 hash and its clear prefix.
func GenerateWith(scheme string) (key string, hash []byte, prefix string, err error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, "", fmt.Errorf("generate key: %w", err)
	}
	key = scheme + base64.RawURLEncoding.EncodeToString(b[:])
	return key, Hash(key), key[:PrefixLen], nil
}

// Hash returns the SHA-256 hash under which key is stored.
func Hash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// LooksValid reports whether key has the shape of an agent key, so a
// caller can refuse garbage before touching the store.
func LooksValid(key string) bool { return LooksValidWith(Scheme, key) }

// LooksValidWith reports whether key has the shape of a secret made by
// GenerateWith(scheme).
func LooksValidWith(scheme, key string) bool {
	rest, ok := strings.CutPrefix(key, scheme)
	if !ok || len(rest) != base64.RawURLEncoding.EncodedLen(secretBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil
}
